"""The constrained objective's multiplier schedule (``objective.constraint_every`` = n): the held-out
deterministic-gate CE is measured and the multiplier moved at main-phase steps 1, 1+n, 1+2n, ...; in
between the multiplier is held, and the multiplier history records the value each step used."""

import pytest

from econ_ray.config import ConfigError, parse_config
from econ_ray.objectives import LagrangeController
from econ_ray.training import RunHooks, train_run
from econ_ray.training.loop import constraint_step, constraint_updates


def tiny_cfg(**objective):
    return parse_config(
        {
            "model": {
                "name": "tiny-bert",
                "tiny": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64},
                "ffn_activation": "relu",
                "dropout": 0.0,
            },
            "data": {
                "source": "builtin:majority",
                "max_length": 16,
                "heldout_fraction": 0.2,
                "builtin": {"n_train": 300, "n_validation": 100, "max_len": 14, "noise_pct": 10},
            },
            "attention": {"mode": "gates"},
            "objective": {
                "kind": "constrained",
                "tau_rel": 0.02,
                "dense_steps": 10,
                "constraint_batch_size": 16,
                "multiplier": {"lr": 1.0, "kp": 2.0, "ki": 1.0, "init": 0.5},
                **objective,
            },
            "training": {
                "lr": 3e-3,
                "gate_lr": 5e-2,
                "batch_size": 16,
                "max_steps": 10,
                "eval_every": 5,
                "seed": 0,
                "progress": False,
            },
        },
        "test.yaml",
    )


def _run(every):
    cfg = tiny_cfg(constraint_every=every)
    records = []
    res = train_run(cfg, hooks=RunHooks(on_step=records.append))
    return cfg, res, records


def _replayed(cfg, tau, records):
    """The multiplier each step should have used: a fresh controller fed the measured CEs in order."""
    m = cfg.objective.multiplier
    ctl = LagrangeController(tau, lr=m.lr, kp=m.kp, ki=m.ki, init=m.init)
    out = []
    for r in records:
        if "constraint_ce" in r:
            ctl.update(r["constraint_ce"])
        out.append(ctl.value)
    return out


def test_schedule_steps_and_counts():
    assert [s for s in range(1, 11) if constraint_step(s, 1)] == list(range(1, 11))
    assert [s for s in range(1, 11) if constraint_step(s, 4)] == [1, 5, 9]
    assert [constraint_updates(s, 4) for s in (0, 1, 4, 5, 8, 9, 10)] == [0, 1, 1, 2, 2, 3, 3]
    assert [constraint_updates(s, 1) for s in (0, 1, 7)] == [0, 1, 7]


@pytest.mark.parametrize("every", [1, 4])
def test_multiplier_moves_only_at_update_steps_and_history_is_what_was_used(every):
    cfg, res, records = _run(every)
    assert [r["step"] for r in records] == list(range(1, 11))
    updated = [r["step"] for r in records if "constraint_ce" in r]
    assert updated == [s for s in range(1, 11) if (s - 1) % every == 0]  # every=1: every step, as before
    # one history entry per step: the multiplier that step's Lagrangian used
    assert res.multiplier_history == [r["multiplier"] for r in records]
    assert res.summary["multiplier"] == res.multiplier_history[-1]
    for prev, cur in zip(records, records[1:]):
        if "constraint_ce" not in cur:
            assert cur["multiplier"] == prev["multiplier"]  # held between updates
    # and it is exactly the controller driven by the measured CEs, one dual step per measurement
    assert res.multiplier_history == _replayed(cfg, res.summary["tau_aim"], records)
    assert len(set(res.multiplier_history)) > 1  # the multiplier did move (the test can tell)


def test_constraint_every_below_one_is_a_config_error():
    for bad in (0, -2):
        with pytest.raises(ConfigError) as err:
            tiny_cfg(constraint_every=bad)
        msg = str(err.value)
        assert msg.startswith("test.yaml: ") and "objective.constraint_every" in msg
        assert "greater than or equal to 1" in msg
    assert tiny_cfg().objective.constraint_every == 1  # the default: every step


def test_paired_drive_compares_each_batch_with_the_dense_models_ce_of_the_same_rows():
    """drive_reference 'paired': the multiplier's ceiling at each update is the dense model's CE of that
    very drive batch times tau_aim / CE_dense (measured before the first step), and the multiplier is
    what a controller fed those per-batch ceilings gives."""
    from econ_ray.training.loop import heldout_parts, prepare

    cfg = tiny_cfg(drive_reference="paired")
    p = prepare(cfg)
    records = []
    res = train_run(cfg, prepared=p, hooks=RunHooks(on_step=records.append))
    s = res.summary
    taus = [r["constraint_tau"] for r in records]
    assert len(taus) == 10 and all(t > 0 for t in taus)
    # drive rows: half the held-out split, batches of 16 in a fixed cycle: the ceilings repeat with it
    n_drive = len(heldout_parts(p.heldout)[0])
    per_cycle = -(-n_drive // 16)
    assert len(set(taus)) == min(per_cycle, 10) > 1
    if per_cycle < 10:
        assert taus[per_cycle] == taus[0]
    m = cfg.objective.multiplier
    ctl = LagrangeController(s["tau_aim"], lr=m.lr, kp=m.kp, ki=m.ki, init=m.init)
    replay = []
    for r in records:
        ctl.update(r["constraint_ce"], r["constraint_tau"])
        replay.append(ctl.value)
    assert replay == pytest.approx(res.multiplier_history, rel=1e-6)


def test_drive_reference_is_checked_by_the_schema():
    with pytest.raises(ConfigError, match="drive_reference"):
        tiny_cfg(drive_reference="batch")
