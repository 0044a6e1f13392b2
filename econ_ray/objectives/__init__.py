"""Training objectives: the cost-penalised loss and the loss-constrained Lagrangian.

Each objective is one module named after its ``objective.kind`` whose ``build(cfg)`` returns an
:class:`Objective` (see ``econ_ray.objectives.base``); :func:`make_objective` picks it.
"""

from econ_ray.objectives.base import CostKind, Objective, ObjectiveEnv, ObjectiveState, make_objective
from econ_ray.objectives.constrained import ConstrainedObjective, LagrangeController, relative_tau
from econ_ray.objectives.penalised import PenalisedObjective, compute_cost, penalised_loss

__all__ = [
    "ConstrainedObjective",
    "CostKind",
    "LagrangeController",
    "Objective",
    "ObjectiveEnv",
    "ObjectiveState",
    "PenalisedObjective",
    "compute_cost",
    "make_objective",
    "penalised_loss",
    "relative_tau",
]
