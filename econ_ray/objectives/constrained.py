"""Constrained objective (seed 003; METHOD section 3): minimise expected open edges s.t. CE <= tau.

With ``objective.constrain: kl`` the constrained quantity is the student's KL(teacher || student) to the
dense reference model instead of its CE, under the ceiling eps * CE_dense nats (``relative_kl``): the
same multiplier, drive, certification and validation, each reading KL where they read CE.

Solved as a Lagrangian  L = C_attn + mu * (CE / tau - 1)  with the multiplier mu >= 0 held by a
cooper-optim ``DenseMultiplier`` and moved by cooper's nuPI controller (a damped PI controller: a
plain dual-ascent multiplier oscillated over orders of magnitude in the reference runs).

Following the pitfalls recorded in METHOD, the violation that drives mu is measured on a held-out
batch with deterministic (evaluation) gates *before* the primal update, never on the training batch
under sampled gates; the snapshot kept and the run's feasibility are decided on other held-out rows
that the multiplier never reads (certification), and checked once more on validation.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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


def relative_kl(ce_dense: float, eps: float) -> float:
    """The KL ceiling of ``constrain: kl``: eps * CE_dense nats (the same eps as a CE ceiling's allowed
    increase, now a divergence from the teacher); CE_dense must be a trained dense model's held-out CE."""
    if ce_dense <= 0 or eps <= 0:
        raise ValueError(f"a relative KL ceiling needs CE_dense > 0 and eps > 0, got {ce_dense}, {eps}")
    return eps * ce_dense


def aimed_ce(tau: float, ce_dense: float, aim: float) -> float:
    """The CE the multiplier steers to: CE_dense + aim * (tau - CE_dense), at or inside the ceiling.

    Steering at tau itself puts the sparsest certified snapshot on the ceiling, where the sampling
    noise of a few hundred rows decides whether validation meets it; ``aim`` < 1 keeps a share of the
    allowed increase as a margin. A starting CE already at or above tau leaves no room: the aim is tau.
    """
    if not 0.0 < aim <= 1.0:
        raise ValueError(f"aim must be in (0, 1], got {aim}")
    return tau - (1.0 - aim) * max(tau - ce_dense, 0.0)


class LagrangeController:
    """The multiplier mu of the constraint CE <= tau, updated by nuPI from measured violations."""

    def __init__(self, tau: float, *, lr: float = 1.0, kp: float = 2.0, ki: float = 1.0, init: float = 1.0) -> None:
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

    def violation(self, ce: float, tau: float | None = None) -> float:
        """Relative violation CE / tau - 1 (> 0 means the ceiling is broken); ``tau`` defaults to the
        controller's (a paired drive passes the ceiling of the measured batch)."""
        return ce / (self.tau if tau is None else tau) - 1.0

    def update(self, ce: float, tau: float | None = None) -> float:
        """One dual step from a measured CE: mu rises while CE > tau and falls when slack."""
        self.optimizer.zero_grad()
        # d Lagrangian / d mu = violation; nuPI(maximize=True) ascends it, post_step_ clamps at 0
        v = self.violation(ce, tau)
        self.multiplier.weight.grad = torch.tensor([v], dtype=self.multiplier.weight.dtype)
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
    """The :class:`~econ_ray.objectives.base.Objective` ``constrained``: min C_attn s.t. CE <= tau.

    The held-out split is used three ways (METHOD section 3's pitfalls): every ``constraint_every``
    main steps, before the primal update, the multiplier reads the CE of the next batch of the
    held-out *drive* rows under deterministic gates; the primal loss is
    :meth:`LagrangeController.lagrangian`. At every validation the *certification* rows, which
    neither training nor the multiplier ever read, are measured and the sparsest snapshot whose
    certified CE met the ceiling is kept; :meth:`finish` loads it. The starting model (step 0) is
    measured and recorded but is never a candidate: a run that only started feasible has found
    nothing. The run is ``feasible`` when a snapshot was certified *and* the returned model's
    validation CE is within tau (a third, independent split); otherwise the summary says why. No
    early stopping: the snapshot, not the validation metric, picks the model.
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
        self.tau_aim: float | None = None  # the CE the multiplier steers to (aimed_ce)
        self.best_feasible: Snapshot | None = None
        # the kept snapshot's step and certified CE; whether the starting model met the ceiling
        self.snapshot_step: int | None = None
        self.snapshot_ce: float | None = None
        self.start_feasible: bool | None = None
        # drive_reference 'paired': the dense model's CE of each drive batch, by its first row
        self._drive_reference: dict[int, float] | None = None
        # constrain 'kl': the kept snapshot's certified KL to the teacher
        self.snapshot_kl: float | None = None

    @property
    def kl(self) -> bool:
        """Whether the constrained quantity is the KL to the teacher (else the CE)."""
        return self.cfg.constrain == "kl"

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

    @property
    def heldout(self) -> Iterator[torch.Tensor]:
        """The held-out drive batches, in the order the multiplier reads them."""
        if self._heldout is None:
            raise RuntimeError("the constrained objective is used before start()")
        return self._heldout

    def start(self, env: ObjectiveEnv) -> None:
        o = self.cfg
        if self.kl and env.heldout_kl is None:
            raise ValueError("objective.constrain 'kl' needs a distillation teacher (objective.distill.weight 1)")
        if self.kl and env.task is not None and env.task.kind == "regression":
            raise ValueError("objective.constrain 'kl' needs a distribution: this task is a regression")
        if o.tau is not None:
            tau = o.tau
        elif o.tau_rel is not None:
            tau = relative_kl(env.ce_dense, o.tau_rel) if self.kl else relative_tau(env.ce_dense, o.tau_rel)
        else:  # the schema refuses this combination
            raise ValueError("objective 'constrained' needs tau or tau_rel")
        self._env, self.tau = env, tau
        # the dense model's value of the constrained quantity: its CE, or its KL to itself (0)
        self.tau_aim = aimed_ce(tau, 0.0 if self.kl else env.ce_dense, o.aim)
        m = o.multiplier
        # the multiplier steers to tau_aim; certification and feasibility (below) use tau
        self._controller = LagrangeController(self.tau_aim, lr=m.lr, kp=m.kp, ki=m.ki, init=m.init)
        self._heldout = env.heldout_batches(o.constraint_batch_size, 0)
        if o.drive_reference == "paired":
            self._drive_reference = self._dense_drive_ces(env)

    def _dense_drive_ces(self, env: ObjectiveEnv) -> dict[int, float]:
        """The dense model's CE of every drive batch (one cycle of them, by first row): called at start,
        before any step, where the model is still the dense model."""
        if env.dense_heldout_ce is None:
            raise ValueError("drive_reference 'paired' needs the dense model's held-out CE, which this loop lacks")
        refs: dict[int, float] = {}
        for batch in env.heldout_batches(self.cfg.constraint_batch_size, 0):
            first = int(batch[0])
            if first in refs:  # the cycle came round
                break
            refs[first] = env.dense_heldout_ce(batch)
        return refs

    def drive_tau(self, batch: torch.Tensor) -> float | None:
        """The ceiling the multiplier compares this drive batch's CE with: None (the aimed tau) unless
        paired, then the dense model's CE of the same rows x tau_aim / CE_dense."""
        if self._drive_reference is None:
            return None
        assert self.tau_aim is not None
        return self._drive_reference[int(batch[0])] * self.tau_aim / self.env.ce_dense

    def _certify(self, step: int) -> Record:
        """CE and density of the certification rows with deterministic gates; a snapshot (from step 1
        on) when it meets the ceiling and is the sparsest so far."""
        assert self.tau is not None
        ev = self.env.evaluate_certify()
        ce, density = float(ev["ce"]), float(ev["attention_density"])
        kl = float(ev["kl_teacher"]) if self.kl else None
        meets = (kl if kl is not None else ce) <= self.tau
        if step == 0:
            self.start_feasible = meets
        elif meets and (self.best_feasible is None or density <= self.best_feasible[0]):
            self.best_feasible = (density, copy.deepcopy(self.env.model.state_dict()))
            self.snapshot_step, self.snapshot_ce, self.snapshot_kl = step, ce, kl
        rec: Record = {"step": step, "certify_ce": ce, "certify_density": density, "meets_ceiling": meets}
        if kl is not None:
            rec["certify_kl"] = kl
        return rec

    def initial_records(self) -> list[Record]:
        return [self._certify(0)]  # recorded, never kept: the starting model is not a result

    def before_step(self, step: int) -> Record:
        rec: Record = {}
        if constraint_step(step, self.cfg.constraint_every):
            # drive mu with the CE of deterministic gates on held-out drive rows, measured before the update
            batch = next(self.heldout)
            if self.kl:
                assert self.env.heldout_kl is not None
                kl = self.env.heldout_kl(batch)
                self.controller.update(kl)
                rec["constraint_kl"] = kl
                rec["multiplier"] = self.controller.value
                return rec
            ce_det = self.env.heldout_ce(batch)
            tau = self.drive_tau(batch)
            self.controller.update(ce_det, tau)
            rec["constraint_ce"] = ce_det
            if tau is not None:
                rec["constraint_tau"] = tau
        rec["multiplier"] = self.controller.value  # held between updates; the history has the mu each step used
        return rec

    def after_step(self, step: int) -> Record:
        return {}

    def loss(
        self, task_loss: torch.Tensor, attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, Record]:
        attn_cost = torch.stack(list(attn_costs)).mean()
        return self.controller.lagrangian(attn_cost, task_loss), {"cost": float(attn_cost.detach())}

    def on_eval(self, step: int) -> Record:
        return self._certify(step)

    def state_dict(self) -> ObjectiveState:
        meta = {
            "snapshot_step": self.snapshot_step,
            "snapshot_ce": self.snapshot_ce,
            "start_feasible": self.start_feasible,
            "drive_reference": self._drive_reference,
            "snapshot_kl": self.snapshot_kl,
        }
        return ObjectiveState(tensors={"controller": self.controller.state_dict(), **meta}, snapshot=self.best_feasible)

    def load_state_dict(self, state: ObjectiveState, *, step: int) -> None:
        self.best_feasible = state.snapshot
        if state.tensors is not None:
            self.controller.load_state_dict(state.tensors["controller"])
            self.snapshot_step = state.tensors.get("snapshot_step")
            self.snapshot_ce = state.tensors.get("snapshot_ce")
            self.start_feasible = state.tensors.get("start_feasible")
            self.snapshot_kl = state.tensors.get("snapshot_kl")
        # the same held-out batches as an uninterrupted run
        skip = constraint_updates(step, self.cfg.constraint_every)
        self._heldout = self.env.heldout_batches(self.cfg.constraint_batch_size, skip)
        if self._drive_reference is not None:  # start() measured the resumed model, not the dense one
            if state.tensors is None or state.tensors.get("drive_reference") is None:
                raise ValueError("the checkpoint has no paired drive reference: it was saved without one")
            self._drive_reference = {int(k): float(v) for k, v in state.tensors["drive_reference"].items()}

    def finish(self) -> None:
        if self.best_feasible is not None:
            self.env.model.load_state_dict(self.best_feasible[1])  # the sparsest certified snapshot
        # else: no snapshot met the ceiling; the final model is returned and the run is infeasible

    @property
    def tau_validation(self) -> float | None:
        """The ceiling validation CE must meet: (1 + eps) x the dense model's validation CE for a relative
        ceiling (the same rows on both sides: a few hundred certification rows and a few hundred
        validation rows differ in CE by more than a 1 % ceiling), tau itself for an absolute one. With
        ``constrain: kl``, eps x the dense validation CE nats of KL to the teacher."""
        if self.cfg.tau_rel is not None and self._env is not None and self._env.ce_dense_validation is not None:
            if self.kl:
                return relative_kl(self._env.ce_dense_validation, self.cfg.tau_rel)
            return relative_tau(self._env.ce_dense_validation, self.cfg.tau_rel)
        return self.tau

    def infeasible_reason(self, validation_ce: float) -> str | None:
        """Why the run is not feasible (None when it is): no certified snapshot, or the validation value of
        the constrained quantity (``validation_ce``: CE, or KL to the teacher with ``constrain: kl``) above
        :attr:`tau_validation`."""
        assert self.tau is not None
        if self.best_feasible is None:
            if self.start_feasible:
                return "only the starting model (step 0) met the ceiling on the certification rows"
            return "no snapshot met the ceiling on the certification rows"
        tau_val = self.tau_validation
        assert tau_val is not None
        if not validation_ce <= tau_val:
            if self.kl:
                which = "eps x the dense validation CE" if tau_val != self.tau else "tau"
                return f"validation KL to the teacher {validation_ce:.4f} is above {which} {tau_val:.4f}"
            which = "(1 + eps) x the dense validation CE" if tau_val != self.tau else "tau"
            return f"validation CE {validation_ce:.4f} is above {which} {tau_val:.4f}"
        return None

    def summary(self, per_step: Sequence[float], final: Mapping[str, Any]) -> Record:
        reason = self.infeasible_reason(float(final["kl_teacher"] if self.kl else final["ce"]))
        return {
            "constrain": self.cfg.constrain,
            "tau": self.tau,
            "tau_rel": self.cfg.tau_rel,
            "tau_aim": self.tau_aim,
            "tau_validation": self.tau_validation,
            "multiplier": per_step[-1] if per_step else None,
            "feasible": reason is None,
            "certified": self.best_feasible is not None,
            "snapshot_step": self.snapshot_step,
            "ce_certified": self.snapshot_ce,
            "kl_certified": self.snapshot_kl,
            "infeasible_reason": reason,
        }


def build(cfg: ObjectiveConfig) -> Objective:
    return ConstrainedObjective(cfg)
