"""What a training objective is to the training loop (METHOD section 3), and the registry of them.

An objective is any object with the methods of :class:`Objective` (a ``typing.Protocol``: no base
class to inherit). The loop (``econ_ray.training.loop``) asks it which costs the attention runtime must
record, gives it the task loss and those costs of every batch, calls it before every main-phase step,
at every validation, for checkpoints and for the summary. It never asks which objective it runs.

Adding an objective = one module ``econ_ray/objectives/<kind>.py`` whose ``build(cfg)`` returns the
objective, plus ``<kind>`` in ``ObjectiveKind`` and its fields (with descriptions) in
``ObjectiveConfig`` (``econ_ray/config/schema.py``). :func:`make_objective` finds the module by kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from econ_ray.attention.runtime import EconRuntime
    from econ_ray.config.schema import ObjectiveConfig
    from econ_ray.data import EncodedSplit, TaskSpec

Record = dict[str, Any]
# The differentiable costs an objective can ask the attention runtime to record in training.
CostKind = Literal["attention", "ffn"]
# (score, model weights): a model snapshot an objective keeps (constrained: the sparsest that met the
# ceiling, scored by its attention density).
Snapshot = tuple[float, dict[str, torch.Tensor]]


@dataclass
class ObjectiveState:
    """What an objective saves in a training-state checkpoint (``econ_ray.training.checkpoint``)."""

    tensors: dict[str, Any] | None = None  # tensors, numbers, strings, lists, dicts (a weights-only load)
    snapshot: Snapshot | None = None  # a model snapshot (written with safetensors)


@dataclass(frozen=True)
class ObjectiveEnv:
    """What the training loop lends an objective for the main phase.

    The held-out split comes in two disjoint parts (``econ_ray.training.loop.heldout_parts``): the
    *drive* rows, which :attr:`heldout_ce` and :attr:`heldout_batches` read (a multiplier's input),
    and the *certification* rows, which only :attr:`evaluate_certify` reads (which snapshot to keep,
    whether the run met its ceiling). Neither is ever trained on.
    """

    model: nn.Module
    ce_dense: float  # CE of the trained dense model on the certification rows (a relative ceiling's reference)
    # Metrics (ce, attention_density, ...) of the certification rows with deterministic gates, no Gini/entropy.
    evaluate_certify: Callable[[], Mapping[str, Any]]
    # CE of the given drive rows under deterministic gates, without autograd state or cost terms.
    heldout_ce: Callable[[torch.Tensor], float]
    # Drive-row batches of the given size in a fixed order, the first ``skip`` of them skipped.
    heldout_batches: Callable[[int, int], Iterator[torch.Tensor]]
    # The trained dense model's validation CE: a relative ceiling's reference on validation (the final check
    # compares validation CE with (1 + eps) times it, the same rows on both sides); None where unknown.
    ce_dense_validation: float | None = None
    # CE of the given drive rows with every edge open (dense attention), no autograd state: called before
    # the first main step it is the dense model's (a paired reference); None where the loop has none.
    dense_heldout_ce: Callable[[torch.Tensor], float] | None = None
    # Mean KL(distillation teacher || model) of the given drive rows under deterministic gates, no autograd
    # state (``objective.constrain: kl``); None where the run has no teacher. With a teacher,
    # evaluate_certify's metrics also have ``kl_teacher``.
    heldout_kl: Callable[[torch.Tensor], float] | None = None
    # The installed attention runtime (its structural masks), the task, the FLOPs' sequence length
    # and the number of main-phase steps (a schedule's horizon).
    runtime: EconRuntime | None = None
    task: TaskSpec | None = None
    seq_len: int = 0
    steps: int = 0
    # Training rows an objective may fit scores on (a pruning baseline's calibration), never validation.
    calibration: EncodedSplit | None = None


class Objective(Protocol):
    """A training objective as the training loop uses it."""

    @property
    def costs(self) -> frozenset[CostKind]:
        """The costs the attention runtime must record in training (empty: none, a plain task loss)."""
        ...

    @property
    def early_stopping(self) -> bool:
        """Whether validation early stopping (``training.early_stopping_patience``) applies."""
        ...

    @property
    def per_step_field(self) -> str | None:
        """The field of every step record kept as the run's per-step history (``RunResult.multiplier_history``),
        or None."""
        ...

    def start(self, env: ObjectiveEnv) -> None:
        """Begin the main phase (after the dense reference, before its engine is built)."""
        ...

    def initial_records(self) -> list[Record]:
        """History records before the first main step of a run not resumed."""
        ...

    def before_step(self, step: int) -> Record:
        """Work before main-phase step ``step`` (1-based); returns fields for the step record."""
        ...

    def after_step(self, step: int) -> Record:
        """Work after the optimiser step of main-phase step ``step`` (e.g. the objective's own
        parameters and multipliers); returns fields for the step record."""
        ...

    def loss(
        self, task_loss: torch.Tensor, attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, Record]:
        """The loss to minimise for one batch from its task loss and the runtime's popped costs, and
        fields for the step record."""
        ...

    def on_eval(self, step: int) -> Record:
        """Fields added to the validation record of step ``step``."""
        ...

    def state_dict(self) -> ObjectiveState:
        """The state a resumed run needs."""
        ...

    def load_state_dict(self, state: ObjectiveState, *, step: int) -> None:
        """Go on from ``state``, saved after main-phase step ``step`` (called after :meth:`start`)."""
        ...

    def finish(self) -> None:
        """End of the main phase, before the final evaluation (e.g. load a kept snapshot)."""
        ...

    def summary(self, per_step: Sequence[float], final: Mapping[str, Any]) -> Record:
        """Fields of the run summary: any of ``tau``, ``tau_rel``, ``multiplier``, ``feasible`` that apply
        (the summary has None for the others) and any of its own. ``per_step`` is the history of
        :attr:`per_step_field`; ``final`` is the final validation evaluation (``ce``, ``metric``, ...)."""
        ...


def make_objective(cfg: ObjectiveConfig) -> Objective:
    """The objective of ``cfg.kind``, built by ``econ_ray.objectives.<kind>.build(cfg)``."""
    module = importlib.import_module(f"econ_ray.objectives.{cfg.kind}")
    build = cast(Callable[["ObjectiveConfig"], Objective], module.build)
    return build(cfg)
