"""Constrained objective (seed 003; METHOD section 3): minimise expected open edges s.t. CE <= tau.

Solved as a Lagrangian  L = C_attn + mu * (CE / tau - 1)  with the multiplier mu >= 0 held by a
cooper-optim ``DenseMultiplier`` and moved by cooper's nuPI controller (a damped PI controller: a
plain dual-ascent multiplier oscillated over orders of magnitude in the reference runs).

Following the pitfalls recorded in METHOD, the violation that drives mu is measured on a held-out
batch with deterministic (evaluation) gates *before* the primal update, never on the training batch
under sampled gates; the training loop also keeps the last snapshot that met the ceiling.
"""

from __future__ import annotations

import cooper
import torch
from cooper.optim import nuPI


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
