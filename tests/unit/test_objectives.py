"""Penalised and constrained objectives: values, gradients, the multiplier's direction."""

import pytest
import torch

from econ_ray.objectives import LagrangeController, compute_cost, penalised_loss, relative_tau


def test_penalised_loss_value_and_layer_average():
    task = torch.tensor(2.0)
    attn = [torch.tensor(0.5), torch.tensor(0.3)]  # mean 0.4
    ffn = [torch.tensor(0.2), torch.tensor(0.4)]  # mean 0.3
    loss, cost = penalised_loss(task, attn, ffn, lam=0.5, alpha=1.0, beta=2.0)
    assert cost.item() == pytest.approx(0.4 + 2 * 0.3)
    assert loss.item() == pytest.approx(2.0 + 0.5 * 1.0)


def test_cost_gradient_flows_to_costs():
    a = torch.tensor([0.6, 0.2], requires_grad=True)
    cost = compute_cost(list(a), [], alpha=1.0, beta=1.0)
    cost.backward()
    assert torch.allclose(a.grad, torch.tensor([0.5, 0.5]))


def test_zero_weights_give_zero_cost():
    assert compute_cost([torch.tensor(0.9)], [torch.tensor(0.9)], alpha=0.0, beta=0.0).item() == 0.0


def test_relative_tau():
    assert relative_tau(0.4, 0.05) == pytest.approx(0.42)
    with pytest.raises(ValueError):
        relative_tau(0.0, 0.05)


def test_multiplier_rises_when_violated_and_falls_to_zero_when_slack():
    c = LagrangeController(1.0, lr=0.1, kp=0.0, ki=1.0)
    for _ in range(5):
        c.update(1.5)
    high = c.value
    assert high > 0
    for _ in range(50):
        c.update(0.5)
    assert c.value == 0.0  # projected onto mu >= 0


def test_lagrangian_gradient_weights_task_loss_by_mu():
    c = LagrangeController(2.0, init=4.0)
    ce = torch.tensor(1.0, requires_grad=True)
    cost = torch.tensor(0.3, requires_grad=True)
    c.lagrangian(cost, ce).backward()
    assert ce.grad.item() == pytest.approx(4.0 / 2.0)
    assert cost.grad.item() == pytest.approx(1.0)
