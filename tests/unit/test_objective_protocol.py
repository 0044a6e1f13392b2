"""The Objective Protocol: every ``objective.kind`` has a module whose ``build`` makes an object with
the Protocol's methods; the penalised objective asks only for the costs it prices; the loop's helpers
restore runtime flags and skip batches."""

import typing

import pytest
import torch

from econ_ray.attention.runtime import EconRuntime
from econ_ray.config.schema import ObjectiveConfig, ObjectiveKind
from econ_ray.objectives import (
    ConstrainedObjective,
    Objective,
    ObjectiveState,
    PenalisedObjective,
    make_objective,
    penalised_loss,
)
from econ_ray.training.loop import _cycle, fast_forward

MEMBERS = sorted(name for name in vars(Objective) if not name.startswith("_"))


def _config(kind):
    if kind == "constrained":
        return ObjectiveConfig(kind=kind, tau_rel=0.05)
    if kind in ("targeted", "prune"):
        return ObjectiveConfig(kind=kind, target_ratio=0.5)
    return ObjectiveConfig(kind=kind)


@pytest.mark.parametrize("kind", typing.get_args(ObjectiveKind))
def test_every_kind_builds_an_objective_with_the_protocol_members(kind):
    obj = make_objective(_config(kind))
    assert len(MEMBERS) == 13
    missing = [name for name in MEMBERS if not hasattr(obj, name)]
    assert not missing, (kind, missing)
    assert isinstance(obj.costs, frozenset)


def test_registry_picks_the_module_of_the_kind():
    assert isinstance(make_objective(ObjectiveConfig(kind="penalised")), PenalisedObjective)
    assert isinstance(make_objective(ObjectiveConfig(kind="constrained", tau=1.0)), ConstrainedObjective)


def test_penalised_asks_only_for_priced_costs_and_matches_the_pure_loss():
    assert make_objective(ObjectiveConfig(lam=0.0, alpha=1.0, beta=1.0)).costs == frozenset()
    assert make_objective(ObjectiveConfig(lam=1.0, alpha=1.0, beta=0.0)).costs == {"attention"}
    assert make_objective(ObjectiveConfig(lam=1.0, alpha=0.0, beta=2.0)).costs == {"ffn"}
    assert make_objective(ObjectiveConfig(lam=1.0, alpha=0.0, beta=0.0)).costs == frozenset()
    obj = make_objective(ObjectiveConfig(lam=0.5, alpha=1.0, beta=2.0))
    task, attn, ffn = torch.tensor(2.0), [torch.tensor(0.5), torch.tensor(0.3)], [torch.tensor(0.2)]
    loss, fields = obj.loss(task, attn, ffn)
    ref, cost = penalised_loss(task, attn, ffn, lam=0.5, alpha=1.0, beta=2.0)
    assert loss.item() == ref.item() and fields == {"cost": float(cost)}
    free, fields = make_objective(ObjectiveConfig()).loss(task, [], [])
    assert free is task and fields == {}
    assert obj.state_dict() == ObjectiveState() and obj.summary([], {"ce": 1.0}) == {}


def test_constrained_asks_for_attention_costs_and_never_stops_early():
    obj = make_objective(ObjectiveConfig(kind="constrained", tau=1.0))
    assert obj.costs == {"attention"} and not obj.early_stopping and obj.per_step_field == "multiplier"


def test_runtime_flag_is_restored_after_an_error():
    rt = EconRuntime()
    rt.need_costs = True
    with pytest.raises(ZeroDivisionError), rt.override(need_costs=False):
        assert rt.need_costs is False
        _ = 1 / 0
    assert rt.need_costs is True


def test_fast_forward_skips_exactly_n_batches():
    skipped = fast_forward(_cycle(10, 4), 2)
    fresh = _cycle(10, 4)
    for _ in range(2):
        next(fresh)
    for _ in range(5):
        assert torch.equal(next(skipped), next(fresh))
