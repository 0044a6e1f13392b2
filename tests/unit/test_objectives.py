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


class _Env:
    """A fake ObjectiveEnv: certification evaluations are read from a script, one per call."""

    def __init__(self, certify, ce_dense=1.0, ce_dense_validation=None):
        self.model = torch.nn.Linear(1, 1)
        self.ce_dense = ce_dense
        self.ce_dense_validation = ce_dense_validation
        self._certify = iter(certify)
        self.drive_batches = []

    def evaluate_certify(self):
        ce, density = next(self._certify)
        with torch.no_grad():
            self.model.weight.fill_(density)  # so the kept snapshot can be told apart
        return {"ce": ce, "attention_density": density}

    def heldout_ce(self, idx):
        return 1.0

    def heldout_batches(self, size, skip):
        return iter([torch.arange(size)] * 100)


def _constrained(certify, ce_dense_validation=None, **kw):
    from econ_ray.config.schema import ObjectiveConfig
    from econ_ray.objectives import make_objective

    obj = make_objective(ObjectiveConfig(kind="constrained", tau_rel=0.1, **kw))
    env = _Env(certify, ce_dense_validation=ce_dense_validation)
    obj.start(env)
    obj.initial_records()
    for step in range(1, len(certify)):
        obj.on_eval(step * 10)
    obj.finish()
    return obj, env


def test_constrained_keeps_the_sparsest_certified_snapshot_after_step_0():
    # tau = 1.1; step 0 (density 1.0) meets it but is never a candidate
    obj, env = _constrained([(1.0, 1.0), (1.05, 0.6), (1.2, 0.1), (1.09, 0.3), (1.1, 0.3), (1.0, 0.5)])
    s = obj.summary([0.5], {"ce": 1.08})
    assert s["feasible"] is True and s["certified"] is True and s["infeasible_reason"] is None
    assert (
        s["snapshot_step"] == 40 and s["ce_certified"] == 1.1
    )  # density ties keep the later one; tau is met at equality
    assert env.model.weight.detach().item() == pytest.approx(0.3)  # finish() loaded that snapshot
    assert s["tau"] == pytest.approx(1.1) and s["multiplier"] == 0.5


def test_constrained_starting_model_alone_is_not_feasible():
    obj, env = _constrained([(1.0, 1.0), (1.3, 0.2), (1.5, 0.0)])
    s = obj.summary([], {"ce": 1.4})
    assert s["feasible"] is False and s["certified"] is False and s["snapshot_step"] is None
    assert "only the starting model (step 0)" in s["infeasible_reason"]
    assert env.model.weight.detach().item() == pytest.approx(0.0)  # no snapshot: the final model stays
    obj, _ = _constrained([(1.2, 1.0), (1.3, 0.2)])
    assert obj.summary([], {"ce": 1.4})["infeasible_reason"] == "no snapshot met the ceiling on the certification rows"


def test_constrained_validation_above_tau_is_not_feasible_even_when_certified():
    obj, _ = _constrained([(1.0, 1.0), (1.05, 0.4)])
    s = obj.summary([], {"ce": 1.1000001})
    assert s["certified"] is True and s["feasible"] is False
    assert s["infeasible_reason"] == "validation CE 1.1000 is above tau 1.1000"
    assert obj.summary([], {"ce": 1.1})["feasible"] is True  # at tau exactly: met
    assert obj.summary([], {"ce": float("nan")})["feasible"] is False  # a NaN never meets a ceiling


def test_a_relative_ceiling_is_checked_on_validation_against_the_dense_validation_ce():
    """Validation CE is compared with (1 + eps) x the dense model's validation CE, the same rows on both
    sides, not with tau (set on the certification rows, whose CE differs from validation's by sampling)."""
    obj, _ = _constrained([(1.0, 1.0), (1.05, 0.4)], ce_dense_validation=0.9)
    s = obj.summary([], {"ce": 1.0})  # below tau = 1.1, above 1.1 x 0.9 = 0.99
    assert s["tau"] == pytest.approx(1.1) and s["tau_validation"] == pytest.approx(0.99)
    assert s["feasible"] is False
    assert s["infeasible_reason"] == "validation CE 1.0000 is above (1 + eps) x the dense validation CE 0.9900"
    assert obj.summary([], {"ce": 0.98})["feasible"] is True
    obj, _ = _constrained([(1.0, 1.0), (1.05, 0.4)], ce_dense_validation=1.2)
    assert obj.summary([], {"ce": 1.3})["feasible"] is True  # 1.3 <= 1.1 x 1.2: validation is harder here


def test_constrained_snapshot_facts_survive_a_checkpoint():
    from econ_ray.config.schema import ObjectiveConfig
    from econ_ray.objectives import make_objective

    obj, _ = _constrained([(1.0, 1.0), (1.05, 0.4)])
    state = obj.state_dict()
    again = make_objective(ObjectiveConfig(kind="constrained", tau_rel=0.1))
    again.start(_Env([]))
    again.load_state_dict(state, step=10)
    s = again.summary([], {"ce": 1.0})
    assert (s["snapshot_step"], s["ce_certified"], s["feasible"]) == (10, 1.05, True)
