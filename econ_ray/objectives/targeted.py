"""Budget-targeted structured compression (CoFi, Xia et al. 2022; METHOD section 7): learn which heads,
FFN neurons and whole sublayers to remove so that the model's static FLOPs meet a target.

Hard-concrete masks (``econ_ray.objectives.hard_concrete``) gate every unit. Their keep probabilities give the
expected static FLOPs in closed form (``econ_ray.compute.flops.expected_static_flops``, the same
counting as every other FLOPs number); with ``s`` that expectation as a fraction of the dense
model's FLOPs and ``t`` the scheduled target, training minimises

    L = L_task + lambda1 * (s - t) + lambda2 * (s - t)^2

over weights and log-alphas, while the two multipliers (cooper-optim ``DenseMultiplier``s) ascend it.
The target starts at the dense model (t = 1) and moves linearly to its final value over
``objective.target_warmup`` of the main steps. At ``1 - objective.finetune_fraction`` of the steps the
masks become deterministic: units are kept greedily by keep probability while their FLOPs fit the
target, so the cut meets it exactly (within one unit); kept neurons that never fire on the training
rows (ReLU) are dropped and their FLOPs refilled by the next units, since static FLOPs would drop
them anyway; the rest of training fine-tunes the cut model. With ``objective.add_price`` the price on open edges and FFN mass of ``penalised``
(``objective.lam``, ``alpha``, ``beta``) is added on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cooper
import torch

from econ_ray.compute.flops import dense_flops, expected_static_flops, shape_from_hf_config, static_flops, unit_costs
from econ_ray.objectives.base import CostKind, Objective, ObjectiveEnv, ObjectiveState, Record
from econ_ray.objectives.hard_concrete import Cut, StructuredMasks, cut_skipping_unused, write_cut
from econ_ray.objectives.penalised import compute_cost
from econ_ray.surgery.masks import activation_sums

if TYPE_CHECKING:
    from econ_ray.compute.flops import ArchShape
    from econ_ray.config.schema import ObjectiveConfig


def scheduled_target(step: int, steps: int, final: float, warmup: float) -> float:
    """The target ratio at main step ``step`` (1-based): 1 (dense) moving linearly to ``final`` over the
    first ``warmup`` share of ``steps``, then ``final``."""
    horizon = warmup * steps
    if horizon <= 0 or step >= horizon:
        return final
    return 1.0 + (final - 1.0) * step / horizon


def cut_step(steps: int, finetune_fraction: float) -> int:
    """The last main step trained with learned masks; the cut is fixed from the next one on."""
    return max(1, min(steps, round((1.0 - finetune_fraction) * steps)))


def resolve_target(cfg: ObjectiveConfig, env: ObjectiveEnv) -> tuple[ArchShape, float, float]:
    """(shape, dense FLOPs, target FLOPs) of a run whose objective asks for ``target_ratio`` or
    ``target_gflops``; ValueError naming the field when the target is above the dense model or below
    what no structural mask removes."""
    if env.runtime is None or env.task is None or env.seq_len <= 0 or env.steps <= 0:
        raise ValueError(f"objective '{cfg.kind}' needs the runtime, task, sequence length and steps")
    lm = env.task.kind == "lm"
    shape = shape_from_hf_config(env.model.config, n_labels=None if lm else env.task.num_labels, lm_head=lm)
    dense = dense_flops(shape, env.seq_len).total
    if cfg.target_ratio is not None:
        target = cfg.target_ratio * dense
    elif cfg.target_gflops is not None:
        target = cfg.target_gflops * 1e9
    else:  # the schema refuses this
        raise ValueError(f"objective '{cfg.kind}' needs target_ratio or target_gflops")
    fixed = unit_costs(shape, env.seq_len).fixed
    if target > dense * (1 + 1e-9):
        raise ValueError(
            f"objective.target_gflops: {target / 1e9:.6g} GFLOPs is above the dense model's "
            f"{dense / 1e9:.6g} at {env.seq_len} tokens; expected at most that"
        )
    if target < fixed:
        raise ValueError(
            f"objective.target_ratio/target_gflops: {target / 1e9:.6g} GFLOPs is below the "
            f"{fixed / 1e9:.6g} GFLOPs that no mask removes (pooler, classifier, LM head)"
        )
    return shape, dense, target


def cut_summary(cut: Cut | None, shape: ArchShape | None, seq_len: int, target: float, dense: float) -> Record:
    """The summary fields of a run cut to a target (targeted, prune): the target, the cut's static FLOPs
    (before any kept unit turns out never used) and the units it kept; None where nothing was cut."""
    out: Record = {"target_ratio": target / dense, "target_gflops": target / 1e9}
    if cut is None or shape is None:
        return {**out, "cut_gflops": None, "heads_kept": None, "neurons_kept": None}
    return {
        **out,
        "cut_gflops": static_flops(shape, seq_len, cut.heads_kept, cut.neurons_kept).total / 1e9,
        "heads_kept": sum(cut.heads_kept),
        "neurons_kept": sum(cut.neurons_kept),
    }


def _all_reduce_mean(tensors: Sequence[torch.Tensor]) -> None:
    """Average the gradients of ``tensors`` over data-parallel workers (a no-op in one process), so the
    masks stay identical on every worker."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in tensors]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.grad = flat[offset : offset + n].view_as(t).clone()
        offset += n


class TargetedObjective:
    """The :class:`~econ_ray.objectives.base.Objective` ``targeted``: the task loss under learned masks,
    subject to expected static FLOPs = the scheduled target, then a cut that meets the target."""

    early_stopping = False  # the cut, not the validation metric, ends the search for structure
    per_step_field: str | None = None

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.cfg = cfg
        needed: set[CostKind] = set()
        if cfg.add_price and cfg.lam > 0:
            if cfg.alpha > 0:
                needed.add("attention")
            if cfg.beta > 0:
                needed.add("ffn")
        self.costs: frozenset[CostKind] = frozenset(needed)
        self._env: ObjectiveEnv | None = None
        self.shape: ArchShape | None = None
        self.dense_flops = 0.0
        self.target_flops = 0.0
        self.masks: StructuredMasks | None = None
        self.cut: Cut | None = None
        self.cut_at: int | None = None  # main step after which the cut was made
        self.expected_ratio_at_cut: float | None = None
        self._target = 1.0
        self._violation = 0.0

    # ---- set-up -------------------------------------------------------------------------------

    @property
    def env(self) -> ObjectiveEnv:
        if self._env is None:
            raise RuntimeError("the targeted objective is used before start()")
        return self._env

    @property
    def learned(self) -> StructuredMasks:
        if self.masks is None:
            raise RuntimeError("the targeted objective is used before start()")
        return self.masks

    @property
    def target_ratio(self) -> float:
        return self.target_flops / self.dense_flops

    def start(self, env: ObjectiveEnv) -> None:
        o = self.cfg
        shape, self.dense_flops, self.target_flops = resolve_target(o, env)
        assert env.runtime is not None
        self._env, self.shape = env, shape
        device = next(env.model.parameters()).device
        self.masks = StructuredMasks(
            shape.n_layers, shape.n_heads, shape.intermediate, init_keep=o.mask_init, device=device
        )
        self.mask_opt = torch.optim.Adam(self.masks.parameters(), lr=o.mask_lr)
        # lambda1 multiplies s - t (an equality: either sign), lambda2 the squared gap (grows while s != t)
        self.lambda1 = cooper.multipliers.DenseMultiplier(init=torch.zeros(1))
        self.lambda2 = cooper.multipliers.DenseMultiplier(init=torch.zeros(1))
        self.lambda_opt = torch.optim.Adam(
            [*self.lambda1.parameters(), *self.lambda2.parameters()], lr=o.lagrangian_lr, maximize=True
        )
        self.cut_at = cut_step(env.steps, o.finetune_fraction) if o.finetune_fraction > 0 else None
        self.masks.write(env.runtime, stochastic=False)

    # ---- the expected cost and the cut ---------------------------------------------------------

    def expected_ratio(self) -> torch.Tensor:
        """Expected static FLOPs of the masked model / the dense model's, differentiable in the masks."""
        assert self.shape is not None
        h, n, a, f = self.learned.keep_probabilities()
        return expected_static_flops(self.shape, self.env.seq_len, h, n, a, f) / self.dense_flops

    def make_cut(self) -> Cut:
        """Fix the masks: the units kept greedily by keep probability within the target (exactly met)."""
        assert self.shape is not None and self.env.runtime is not None
        with torch.no_grad():
            self.expected_ratio_at_cut = float(self.expected_ratio())
        c = unit_costs(self.shape, self.env.seq_len)
        hs, ns = self.learned.unit_scores()
        self.cut = cut_skipping_unused(
            hs,
            ns,
            head_cost=c.head,
            neuron_cost=c.neuron,
            budget=self.target_flops - c.fixed,
            unused=self._never_active,
        )
        write_cut(self.env.runtime, self.cut, next(self.env.model.parameters()).device)
        return self.cut

    def _never_active(self, cut: Cut) -> torch.Tensor | None:
        """(layers, I): the neurons whose activation is zero on every real token of the calibration
        (training) rows with ``cut`` in place, ReLU neurons that never fire, which static FLOPs drop
        whatever the cut keeps (None without calibration rows). Every worker reads the same rows with
        the same weights, so every worker finds the same neurons."""
        env = self.env
        if env.calibration is None or env.runtime is None:
            return None
        write_cut(env.runtime, cut, next(env.model.parameters()).device)
        with env.runtime.override(need_costs=False, collect=False):
            sums, _ = activation_sums(
                env.model, env.runtime, env.calibration, batch_size=32, n_batches=self.cfg.prune_calibration_batches
            )
        return torch.stack(sums) == 0 if sums else None

    # ---- the loop's calls ----------------------------------------------------------------------

    def initial_records(self) -> list[Record]:
        return []

    def before_step(self, step: int) -> Record:
        if self.cut is None and self.cut_at is not None and step > self.cut_at:
            self.make_cut()
            return {"cut": True}
        if self.cut is not None:
            return {}
        assert self.env.runtime is not None
        self._target = scheduled_target(step, self.env.steps, self.target_ratio, self.cfg.target_warmup)
        self.learned.write(self.env.runtime, stochastic=True)
        return {"target": self._target}

    def loss(
        self, task_loss: torch.Tensor, attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, Record]:
        o, rec = self.cfg, {}
        loss = task_loss
        if self.costs:
            cost = compute_cost(attn_costs, ffn_costs, alpha=o.alpha, beta=o.beta)
            loss = loss + o.lam * cost
            rec["cost"] = float(cost.detach())
        if self.cut is None:
            gap = self.expected_ratio().to(task_loss.device) - self._target
            l1 = self.lambda1.weight.to(task_loss.device)[0].detach()
            l2 = self.lambda2.weight.to(task_loss.device)[0].detach()
            loss = loss + l1 * gap + l2 * gap**2
            self._violation = float(gap.detach())
            rec.update(expected_ratio=self._violation + self._target, lambda1=float(l1), lambda2=float(l2))
        return loss, rec

    def after_step(self, step: int) -> Record:
        if self.cut is not None:
            return {}
        assert self.env.runtime is not None
        params = self.learned.parameters()
        _all_reduce_mean(params)
        self.mask_opt.step()
        self.mask_opt.zero_grad(set_to_none=True)
        # d L / d lambda1 = s - t, d L / d lambda2 = (s - t)^2: ascended
        v = self._violation
        self.lambda1.weight.grad = torch.tensor([v], dtype=self.lambda1.weight.dtype)
        self.lambda2.weight.grad = torch.tensor([v * v], dtype=self.lambda2.weight.dtype)
        self.lambda_opt.step()
        self.lambda_opt.zero_grad(set_to_none=True)
        self.learned.write(self.env.runtime, stochastic=False)  # evaluations until the next step
        return {}

    def on_eval(self, step: int) -> Record:
        with torch.no_grad():
            ratio = float(self.expected_ratio())
        return {"expected_ratio": ratio, "target": self._target if self.cut is None else self.target_ratio}

    def state_dict(self) -> ObjectiveState:
        cut = None if self.cut is None else {"heads": self.cut.heads.clone(), "neurons": self.cut.neurons.clone()}
        return ObjectiveState(
            tensors={
                "masks": self.learned.state_dict(),
                "mask_opt": self.mask_opt.state_dict(),
                "lambda1": dict(self.lambda1.state_dict()),
                "lambda2": dict(self.lambda2.state_dict()),
                "lambda_opt": self.lambda_opt.state_dict(),
                "cut": cut,
                "expected_ratio_at_cut": self.expected_ratio_at_cut,
                "target": self._target,
            }
        )

    def load_state_dict(self, state: ObjectiveState, *, step: int) -> None:
        t = state.tensors
        if t is None:
            return
        assert self.env.runtime is not None
        self.learned.load_state_dict(t["masks"])
        self.mask_opt.load_state_dict(t["mask_opt"])
        self.lambda1.load_state_dict(t["lambda1"])
        self.lambda2.load_state_dict(t["lambda2"])
        self.lambda_opt.load_state_dict(t["lambda_opt"])
        self.expected_ratio_at_cut = t.get("expected_ratio_at_cut")
        self._target = float(t.get("target", 1.0))
        if t.get("cut") is not None:
            self.cut = Cut(t["cut"]["heads"].bool(), t["cut"]["neurons"].bool())
            write_cut(self.env.runtime, self.cut, next(self.env.model.parameters()).device)
        else:
            self.learned.write(self.env.runtime, stochastic=False)

    def finish(self) -> None:
        if self.cut is None:
            self.make_cut()

    def summary(self, per_step: Sequence[float], final: Mapping[str, Any]) -> Record:
        return {
            "method": "targeted",
            **cut_summary(self.cut, self.shape, self.env.seq_len, self.target_flops, self.dense_flops),
            "expected_ratio_at_cut": self.expected_ratio_at_cut,
            "lambda1": float(self.lambda1.weight.detach()[0]),
            "lambda2": float(self.lambda2.weight.detach()[0]),
        }


def build(cfg: ObjectiveConfig) -> Objective:
    return TargetedObjective(cfg)
