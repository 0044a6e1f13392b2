"""The penalised objective's cost and loss (econ_ray/objectives/penalised.py) by hand, edge cases included."""

from __future__ import annotations

import pytest
import torch

from econ_ray.config.schema import ObjectiveConfig
from econ_ray.objectives import PenalisedObjective, compute_cost, make_objective, penalised_loss


def test_loss_adds_lam_times_cost() -> None:
    # cost = 1.0 * mean(0.2, 0.4) = 0.3; L = 2 + 0.5 * 0.3 = 2.15
    loss, cost = penalised_loss(
        torch.tensor(2.0), [torch.tensor(0.2), torch.tensor(0.4)], [], lam=0.5, alpha=1.0, beta=1.0
    )
    assert cost.item() == pytest.approx(0.3)
    assert loss.item() == pytest.approx(2.15)


def test_a_priced_cost_kind_without_costs_adds_nothing() -> None:
    # no attention costs recorded: only the FFN term, 2 * mean(0.1, 0.3) = 0.4
    ffn = [torch.tensor(0.1), torch.tensor(0.3)]
    assert compute_cost([], ffn, alpha=1.0, beta=2.0).item() == pytest.approx(0.4)
    assert compute_cost([torch.tensor(0.5)], [], alpha=1.0, beta=2.0).item() == pytest.approx(0.5)
    assert compute_cost([], [], alpha=1.0, beta=1.0).item() == 0.0


def test_zero_cost_lives_on_the_costs_device() -> None:
    # the meta device stands in for a GPU: the zero of unpriced costs follows the costs it was given
    meta = [torch.zeros((), device="meta")]
    assert compute_cost(meta, [], alpha=0.0, beta=0.0).device.type == "meta"
    assert compute_cost([], meta, alpha=0.0, beta=0.0).device.type == "meta"
    assert compute_cost([], [], alpha=0.0, beta=0.0).device.type == "cpu"


def test_objective_asks_for_ffn_costs_at_any_positive_beta() -> None:
    assert PenalisedObjective(lam=1.0, alpha=0.0, beta=0.5).costs == {"ffn"}
    assert PenalisedObjective(lam=1.0, alpha=0.5, beta=0.0).costs == {"attention"}
    assert PenalisedObjective(lam=0.5, alpha=0.5, beta=0.5).costs == {"attention", "ffn"}
    assert PenalisedObjective(lam=0.0, alpha=0.5, beta=0.5).costs == frozenset()


def test_objective_loss_and_fields() -> None:
    obj = make_objective(ObjectiveConfig(lam=2.0, alpha=0.5, beta=0.0))
    loss, fields = obj.loss(torch.tensor(1.0), [torch.tensor(0.2), torch.tensor(0.6)], [torch.tensor(0.9)])
    # cost = 0.5 * mean(0.2, 0.6) = 0.2 (beta 0: the FFN cost is not priced); L = 1 + 2 * 0.2 = 1.4
    assert loss.item() == pytest.approx(1.4)
    assert fields == {"cost": pytest.approx(0.2)}
