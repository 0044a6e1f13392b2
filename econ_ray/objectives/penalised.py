"""Cost-penalised objective (seed 000, eq. 5, with a cost that has a gradient; METHOD section 3).

    L = L_task + lam * C_comp,   C_comp = sum_l w_l (alpha * C_attn,l + beta * C_ffn,l),  w_l = 1 / n_layers

Each C is a fraction of the dense layer's work in [0, 1] (expected open edges; positive FFN mass),
and the layer weights 1/n_layers make C_comp a fraction of the whole model's work, so lam means the
same on every model depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from econ_ray.objectives.base import CostKind, Objective, ObjectiveEnv, ObjectiveState, Record

if TYPE_CHECKING:
    from econ_ray.config.schema import ObjectiveConfig


def compute_cost(
    attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor], *, alpha: float, beta: float
) -> torch.Tensor:
    """C_comp in [0, alpha + beta]: layer-averaged weighted attention and FFN costs."""
    terms = []
    if alpha and attn_costs:
        terms.append(alpha * torch.stack(list(attn_costs)).mean())
    if beta and ffn_costs:
        terms.append(beta * torch.stack(list(ffn_costs)).mean())
    if not terms:
        ref = next(iter([*attn_costs, *ffn_costs]), None)
        return torch.zeros((), device=ref.device if ref is not None else None)
    return torch.stack(terms).sum()


def penalised_loss(
    task_loss: torch.Tensor,
    attn_costs: Sequence[torch.Tensor],
    ffn_costs: Sequence[torch.Tensor],
    *,
    lam: float,
    alpha: float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (L, C_comp) with L = L_task + lam * C_comp."""
    cost = compute_cost(attn_costs, ffn_costs, alpha=alpha, beta=beta)
    return task_loss + lam * cost, cost


class PenalisedObjective:
    """The :class:`~econ_ray.objectives.base.Objective` ``penalised``: ``L_task + lam * C_comp``.

    With ``lam`` = 0, or both weights 0, it asks for no costs and the loss is the task loss itself."""

    early_stopping = True
    per_step_field: str | None = None

    def __init__(self, *, lam: float, alpha: float, beta: float) -> None:
        self.lam, self.alpha, self.beta = lam, alpha, beta
        needed: set[CostKind] = set()
        if lam > 0:
            if alpha > 0:
                needed.add("attention")
            if beta > 0:
                needed.add("ffn")
        self.costs: frozenset[CostKind] = frozenset(needed)

    def start(self, env: ObjectiveEnv) -> None:
        pass

    def initial_records(self) -> list[Record]:
        return []

    def before_step(self, step: int) -> Record:
        return {}

    def after_step(self, step: int) -> Record:
        return {}

    def loss(
        self, task_loss: torch.Tensor, attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, Record]:
        if not self.costs:
            return task_loss, {}
        loss, cost = penalised_loss(task_loss, attn_costs, ffn_costs, lam=self.lam, alpha=self.alpha, beta=self.beta)
        return loss, {"cost": float(cost.detach())}

    def on_eval(self, step: int) -> Record:
        return {}

    def state_dict(self) -> ObjectiveState:
        return ObjectiveState()

    def load_state_dict(self, state: ObjectiveState, *, step: int) -> None:
        pass

    def finish(self) -> None:
        pass

    def summary(self, per_step: Sequence[float], final: Mapping[str, Any]) -> Record:
        return {}  # no ceiling, no multiplier


def build(cfg: ObjectiveConfig) -> Objective:
    return PenalisedObjective(lam=cfg.lam, alpha=cfg.alpha, beta=cfg.beta)
