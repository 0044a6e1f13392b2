"""The pruning baseline as a trial kind: prune the dense model post hoc to a static-FLOPs target, then
fine-tune it for the run's main steps (with the same distillation as the trained methods), so the
search compares methods at equal training.

At the start of the main phase the scores are fitted on ``objective.prune_calibration_batches``
training batches of the dense reference model (never validation), and units are removed until the
static FLOPs (``econ_ray.compute.flops.static_flops``) are at or below the target:

* ``activation``: FFN neurons of lowest mean |activation|, the same count in every layer (more in the
  first layers when the count does not divide);
* ``heads``: attention heads of lowest Michel et al. (2019) importance, normalised per layer and
  removed globally;
* ``both``: the same share of the heads' and of the neurons' FLOPs goes, heads by importance, then
  neurons by activation until the target is met.

The cut is fixed 0/1 masks in the runtime for the whole main phase. When a method cannot reach the
target (``activation`` alone cannot remove attention) it removes everything it can and the summary's
``static_gflops`` says how far it got.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from econ_ray.compute.flops import unit_costs
from econ_ray.objectives.base import CostKind, Objective, ObjectiveEnv, ObjectiveState, Record
from econ_ray.objectives.hard_concrete import Cut, write_cut
from econ_ray.objectives.targeted import cut_summary, resolve_target
from econ_ray.surgery import masks, scores

if TYPE_CHECKING:
    from econ_ray.compute.flops import ArchShape
    from econ_ray.config.schema import ObjectiveConfig


def remove_lowest_per_layer(per_layer: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """(layers, units) keep-mask removing ``n`` units in all, the lowest-scored of each layer, spread as
    evenly as the count allows (earlier layers take the remainder)."""
    n_layers, width = len(per_layer), per_layer[0].numel()
    n = max(0, min(n, n_layers * width))
    keep = torch.ones(n_layers, width, dtype=torch.bool)
    for i, s in enumerate(per_layer):
        k = n // n_layers + (1 if i < n % n_layers else 0)
        if k:
            keep[i, torch.sort(s.float().flatten(), stable=True).indices[:k]] = False
    return keep


def remove_lowest_global(score: torch.Tensor, n: int) -> torch.Tensor:
    """Keep-mask of ``score``'s shape with its ``n`` lowest entries removed (stable order for ties)."""
    flat = score.float().flatten()
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    n = max(0, min(n, flat.numel()))
    if n:
        keep[torch.sort(flat, stable=True).indices[:n]] = False
    return keep.view(score.shape)


def plan_cut(
    method: str,
    shape: ArchShape,
    seq_len: int,
    target: float,
    head_score: torch.Tensor,
    neuron_score: Sequence[torch.Tensor],
) -> Cut:
    """The baseline's cut: the fewest units removed (by ``method``'s scores) so static FLOPs <= target,
    or all that ``method`` can remove when that is not enough."""
    c = unit_costs(shape, seq_len)
    n_heads, n_neurons = shape.n_layers * shape.n_heads, shape.n_layers * shape.intermediate
    dense = c.fixed + c.head * n_heads + c.neuron * n_neurons
    excess = max(0.0, dense - target)
    all_heads = torch.ones(shape.n_layers, shape.n_heads, dtype=torch.bool)
    all_neurons = torch.ones(shape.n_layers, shape.intermediate, dtype=torch.bool)
    if method == "heads":
        return Cut(remove_lowest_global(head_score, math.ceil(excess / c.head - 1e-9)), all_neurons)
    if method == "activation":
        return Cut(all_heads, remove_lowest_per_layer(neuron_score, math.ceil(excess / c.neuron - 1e-9)))
    if method != "both":
        raise ValueError(f"objective.prune_method: expected activation, heads or both, got {method!r}")
    share = excess / (c.head * n_heads + c.neuron * n_neurons)
    heads = remove_lowest_global(head_score, math.floor(share * n_heads + 1e-9))
    left = max(0.0, excess - c.head * int((~heads).sum()))
    return Cut(heads, remove_lowest_per_layer(neuron_score, math.ceil(left / c.neuron - 1e-9)))


class PruneObjective:
    """The :class:`~econ_ray.objectives.base.Objective` ``prune``: a post-hoc cut, then fine-tuning."""

    costs: frozenset[CostKind] = frozenset()
    early_stopping = False
    per_step_field: str | None = None

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.cfg = cfg
        self._env: ObjectiveEnv | None = None
        self.shape: ArchShape | None = None
        self.dense_flops = self.target_flops = 0.0
        self.cut: Cut | None = None

    @property
    def env(self) -> ObjectiveEnv:
        if self._env is None:
            raise RuntimeError("the prune objective is used before start()")
        return self._env

    def _device(self) -> torch.device:
        return next(self.env.model.parameters()).device

    def start(self, env: ObjectiveEnv) -> None:
        o = self.cfg
        self.shape, self.dense_flops, self.target_flops = resolve_target(o, env)
        self._env = env
        if env.calibration is None or env.task is None or env.runtime is None:
            raise ValueError("the prune objective needs training rows to fit its scores on")
        rt, model = env.runtime, env.model
        bs = 32
        head_score = torch.zeros(self.shape.n_layers, self.shape.n_heads)
        neuron_score = [torch.zeros(self.shape.intermediate) for _ in range(self.shape.n_layers)]
        with rt.override(mode="dense", need_costs=False):
            if o.prune_method in ("heads", "both"):
                raw = masks.head_importance(
                    model, rt, env.calibration, env.task, batch_size=bs, n_batches=o.prune_calibration_batches
                )
                head_score = scores.normalise_per_layer(raw)
            if o.prune_method in ("activation", "both"):
                sums, tokens = masks.activation_sums(
                    model, rt, env.calibration, batch_size=bs, n_batches=o.prune_calibration_batches
                )
                neuron_score = [scores.mean_abs(s, tokens) for s in sums]
        model.zero_grad(set_to_none=True)  # head importance's backward left gradients
        self.cut = plan_cut(o.prune_method, self.shape, env.seq_len, self.target_flops, head_score, neuron_score)
        write_cut(rt, self.cut, self._device())

    def initial_records(self) -> list[Record]:
        return []

    def before_step(self, step: int) -> Record:
        return {}

    def after_step(self, step: int) -> Record:
        return {}

    def loss(
        self, task_loss: torch.Tensor, attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, Record]:
        return task_loss, {}

    def on_eval(self, step: int) -> Record:
        return {}

    def state_dict(self) -> ObjectiveState:
        assert self.cut is not None
        return ObjectiveState(tensors={"cut": {"heads": self.cut.heads.clone(), "neurons": self.cut.neurons.clone()}})

    def load_state_dict(self, state: ObjectiveState, *, step: int) -> None:
        # start() cut the checkpoint's (fine-tuned) weights; the run's cut is the saved one
        if state.tensors is not None and self.env.runtime is not None:
            self.cut = Cut(state.tensors["cut"]["heads"].bool(), state.tensors["cut"]["neurons"].bool())
            write_cut(self.env.runtime, self.cut, self._device())

    def finish(self) -> None:
        pass

    def summary(self, per_step: Sequence[float], final: Mapping[str, Any]) -> Record:
        return {
            "method": f"prune-{self.cfg.prune_method}",
            **cut_summary(self.cut, self.shape, self.env.seq_len, self.target_flops, self.dense_flops),
        }


def build(cfg: ObjectiveConfig) -> Objective:
    return PruneObjective(cfg)
