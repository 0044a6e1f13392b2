"""Training objectives: the cost-penalised loss and the loss-constrained Lagrangian."""

from econ_ray.objectives.constrained import LagrangeController, relative_tau
from econ_ray.objectives.penalised import compute_cost, penalised_loss

__all__ = ["LagrangeController", "compute_cost", "penalised_loss", "relative_tau"]
