"""Constrained objective (seed 003; METHOD section 3): minimise expected open edges s.t. CE <= tau.

Solved as a Lagrangian  L = C_attn + mu * (CE / tau - 1)  with the multiplier mu >= 0 held by a
cooper-optim ``DenseMultiplier`` and moved by cooper's nuPI controller (a damped PI controller: a
plain dual-ascent multiplier oscillated over orders of magnitude in the reference runs).

Following the pitfalls recorded in METHOD, the violation that drives mu is measured on a held-out
batch with deterministic (evaluation) gates *before* the primal update, never on the training batch
under sampled gates; the training loop also keeps the last snapshot that met the ceiling.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import cooper
import torch
from cooper.optim import nuPI

from econ_ray.objectives.base import CostKind, Objective, ObjectiveEnv, ObjectiveState, Record, Snapshot

if TYPE_CHECKING:
    from econ_ray.config.schema import ObjectiveConfig


def relative_tau(ce_dense: float, eps: float) -> float:
    """tau = (1 + eps) * CE_dense; CE_dense must be a trained dense model's held-out CE."""
    if ce_dense <= 0 or eps < 0:
        raise ValueError(f"need CE_dense > 0 and eps >= 0, got {ce_dense}, {eps}")
    return (1.0 + eps) * ce_dense


class LagrangeController:
    """The multiplier mu of the constraint CE <= tau, updated by nuPI from measured violations."""

    def __init__(self, tau: float, *, lr: float = 0.05, kp: float = 2.0, ki: float = 1.0, init: float = 0.0) -> None:
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.multiplier = cooper.multipliers.DenseMultiplier(init=torch.tensor([float(init)]))
        # Attaching it to an inequality Constraint makes post_step_ project mu onto mu >= 0.
        self.constraint = cooper.Constraint(
            multiplier=self.multiplier,
            constraint_type=cooper.ConstraintType.INEQUALITY,
            formulation_type=cooper.formulations.Lagrangian,
        )
        self.optimizer = nuPI(
            self.multiplier.parameters(), lr=lr, Kp=torch.tensor(kp), Ki=torch.tensor(ki), maximize=True
        )

    @property
    def value(self) -> float:
        return float(self.multiplier.weight.detach()[0])

    def violation(self, ce: float) -> float:
        """Relative violation CE / tau - 1 (> 0 means the ceiling is broken)."""
        return ce / self.tau - 1.0

    def update(self, ce: float) -> float:
        """One dual step from a measured CE: mu rises while CE > tau and falls when slack."""
        self.optimizer.zero_grad()
        # d Lagrangian / d mu = violation; nuPI(maximize=True) ascends it, post_step_ clamps at 0
        self.multiplier.weight.grad = torch.tensor([self.violation(ce)], dtype=self.multiplier.weight.dtype)
        self.optimizer.step()
        self.multiplier.post_step_()
        return self.value

    def state_dict(self) -> dict:
        """The multiplier and nuPI's memory (tensors only), for resuming a run. nuPI's hyper-parameters
        come from the config (its param groups hold an enum that a weights-only load refuses)."""
        return {"multiplier": dict(self.multiplier.state_dict()), "nupi_state": self.optimizer.state_dict()["state"]}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier.load_state_dict(state["multiplier"])
        sd = self.optimizer.state_dict()
        sd["state"] = state["nupi_state"]
        self.optimizer.load_state_dict(sd)

    def lagrangian(self, attn_cost: torch.Tensor, task_loss: torch.Tensor) -> torch.Tensor:
        """Primal loss C_attn + mu * (CE / tau - 1); mu is a constant for the primal step."""
        return attn_cost + self.value * (task_loss / self.tau - 1.0)


def constraint_step(step: int, every: int) -> bool:
    """Whether main-phase step ``step`` (1-based) measures the held-out CE and moves the multiplier:
    steps 1, 1 + every, 1 + 2 every, ... (the first step always has a measured multiplier)."""
    return (step - 1) % every == 0


def constraint_updates(steps: int, every: int) -> int:
    """How many multiplier updates steps 1..``steps`` made (held-out batches they consumed)."""
    return (steps + every - 1) // every


class ConstrainedObjective:
    """The :class:`~econ_ray.objectives.base.Objective` ``constrained``: min C_attn s.t. held-out CE <= tau.

    Every ``constraint_every`` main steps, before the primal update, the multiplier reads the CE of the
    next held-out batch under deterministic gates; the primal loss is :meth:`LagrangeController.lagrangian`.
    At every validation (and before the first step) the whole held-out split is measured and the
    sparsest snapshot that met the ceiling is kept; :meth:`finish` loads it. No early stopping: the
    snapshot, not the validation metric, picks the model.
    """

    costs: frozenset[CostKind] = frozenset({"attention"})
    early_stopping = False
    per_step_field: str | None = "multiplier"

    def __init__(self, cfg: ObjectiveConfig) -> None:
        self.cfg = cfg
        self._env: ObjectiveEnv | None = None
        self._controller: LagrangeController | None = None
        self._heldout: Iterator[torch.Tensor] | None = None
        self.tau: float | None = None
        self.best_feasible: Snapshot | None = None

    @property
    def env(self) -> ObjectiveEnv:
        if self._env is None:
            raise RuntimeError("the constrained objective is used before start()")
        return self._env

    @property
    def controller(self) -> LagrangeController:
        if self._controller is None:
            raise RuntimeError("the constrained objective is used before start()")
        return self._controller

    def start(self, env: ObjectiveEnv) -> None:
        o = self.cfg
        if o.tau is not None:
            tau = o.tau
        elif o.tau_rel is not None:
            tau = relative_tau(env.ce_dense, o.tau_rel)
        else:  # the schema refuses this combination
            raise ValueError("objective 'constrained' needs tau or tau_rel")
        self._env, self.tau = env, tau
        m = o.multiplier
        self._controller = LagrangeController(tau, lr=m.lr, kp=m.kp, ki=m.ki, init=m.init)
        self._heldout = env.heldout_batches(o.constraint_batch_size, 0)

    def _check_feasible(self, step: int) -> Record:
        """Held-out CE and density with deterministic gates; snapshot if it meets the ceiling."""
        assert self.tau is not None
        ev = self.env.evaluate_heldout()
        feasible = ev["ce"] <= self.tau
        if feasible and (self.best_feasible is None or ev["attention_density"] <= self.best_feasible[0]):
            self.best_feasible = (ev["attention_density"], copy.deepcopy(self.env.model.state_dict()))
        return {
            "step": step,
            "heldout_ce": ev["ce"],
            "heldout_density": ev["attention_density"],
            "feasible": feasible,
        }

    def initial_records(self) -> list[Record]:
        return [self._check_feasible(0)]  # the starting point may already meet the ceiling

    def before_step(self, step: int) -> Record:
        rec: Record = {}
        if constraint_step(step, self.cfg.constraint_every):
            # drive mu with the CE of deterministic gates on held-out data, measured before the update
            assert self._heldout is not None
            ce_det = self.env.heldout_ce(next(self._heldout))
            self.controller.update(ce_det)
            rec["constraint_ce"] = ce_det
        rec["multiplier"] = self.controller.value  # held between updates; the history has the mu each step used
        return rec

    def loss(
        self, task_loss: torch.Tensor, attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, Record]:
        attn_cost = torch.stack(list(attn_costs)).mean()
        return self.controller.lagrangian(attn_cost, task_loss), {"cost": float(attn_cost.detach())}

    def on_eval(self, step: int) -> Record:
        return self._check_feasible(step)

    def state_dict(self) -> ObjectiveState:
        return ObjectiveState(tensors=self.controller.state_dict(), snapshot=self.best_feasible)

    def load_state_dict(self, state: ObjectiveState, *, step: int) -> None:
        self.best_feasible = state.snapshot
        if state.tensors is not None:
            self.controller.load_state_dict(state.tensors)
        # the same held-out batches as an uninterrupted run
        skip = constraint_updates(step, self.cfg.constraint_every)
        self._heldout = self.env.heldout_batches(self.cfg.constraint_batch_size, skip)

    def finish(self) -> None:
        if self.best_feasible is not None:
            self.env.model.load_state_dict(self.best_feasible[1])  # the sparsest snapshot that met the ceiling

    def summary(self, per_step: Sequence[float]) -> Record:
        return {
            "tau": self.tau,
            "tau_rel": self.cfg.tau_rel,
            "multiplier": per_step[-1] if per_step else None,
            "feasible": self.best_feasible is not None,
        }


def build(cfg: ObjectiveConfig) -> Objective:
    return ConstrainedObjective(cfg)
