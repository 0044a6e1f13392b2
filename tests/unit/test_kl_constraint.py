"""``objective.constrain: kl``: the constrained objective bounds the student's KL(teacher || student) to
the dense reference model instead of its CE, with the ceiling eps * CE_dense nats; drive, certification,
validation and the multiplier all read the KL."""

import copy
import json

import pytest
import torch

from econ_ray.cli.main import main
from econ_ray.config import ConfigError
from econ_ray.objectives import LagrangeController
from econ_ray.objectives.constrained import relative_kl
from econ_ray.training import RunHooks, train_run
from econ_ray.training.distill import make_teacher
from econ_ray.training.loop import _deterministic_kl, prepare
from tests.unit.test_constraint_every import tiny_cfg

KD = {"weight": 1.0, "temperature": 1.0}


def kl_cfg(**objective):
    return tiny_cfg(constrain="kl", distill=KD, **objective)


def test_the_schema_asks_for_the_distillation_loss_itself_and_a_plain_drive():
    assert kl_cfg().objective.constrain == "kl"
    assert tiny_cfg().objective.constrain == "ce"  # the default is unchanged
    with pytest.raises(ConfigError, match="distill.weight 1.0"):
        tiny_cfg(constrain="kl", distill={"weight": 0.5, "temperature": 1.0})
    with pytest.raises(ConfigError, match="temperature 2.0"):
        tiny_cfg(constrain="kl", distill={"weight": 1.0, "temperature": 2.0})
    with pytest.raises(ConfigError, match="drive_reference 'tau'"):
        kl_cfg(drive_reference="paired")
    with pytest.raises(ConfigError, match="objective.constrain"):
        tiny_cfg(constrain="mse")


def test_relative_kl_ceiling():
    assert relative_kl(0.5, 0.02) == pytest.approx(0.01)
    for bad in ((0.0, 0.1), (0.5, 0.0), (0.5, -0.1)):
        with pytest.raises(ValueError):
            relative_kl(*bad)


def test_the_kl_of_a_batch_is_the_mean_per_example_divergence_from_the_teacher():
    cfg = kl_cfg()
    p = prepare(cfg)
    teacher = make_teacher(p.model)
    batch = {k: v for k, v in p.validation.batch(torch.arange(24)).items()}
    # the model against its own copy: 0
    assert _deterministic_kl(p.model, p.runtime, teacher, iter([batch]), "classification") == pytest.approx(
        0.0, abs=1e-6
    )
    # a moved model against the teacher: the KL of their logits, averaged over examples (two batches = one)
    with torch.no_grad():
        for q in p.model.classifier.parameters():
            q.add_(0.3 * torch.randn_like(q))
    p.model.train()
    halves = [{k: v[:10] for k, v in batch.items()}, {k: v[10:] for k, v in batch.items()}]
    got = _deterministic_kl(p.model, p.runtime, teacher, iter(halves), "classification")
    assert p.model.training  # the training flag it found is restored
    p.model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        lt, ls = torch.log_softmax(teacher(**inputs).logits, -1), torch.log_softmax(p.model(**inputs).logits, -1)
    ref = float((lt.exp() * (lt - ls)).sum(-1).mean())
    assert ref > 1e-4 and got == pytest.approx(ref, rel=1e-5)


@pytest.fixture(scope="module")
def kl_run():
    cfg = kl_cfg(tau_rel=0.05)
    records = []
    res = train_run(cfg, hooks=RunHooks(on_step=records.append))
    return cfg, res, records


def test_the_multiplier_reads_the_drive_rows_kl_against_eps_times_ce_dense(kl_run):
    cfg, res, records = kl_run
    s = res.summary
    assert s["constrain"] == "kl"
    assert s["tau"] == pytest.approx(0.05 * s["ce_dense"])  # nats of KL, not (1 + eps) CE_dense
    assert s["tau_aim"] == pytest.approx(cfg.objective.aim * s["tau"])  # the dense model's KL is 0
    assert all("constraint_kl" in r and "constraint_ce" not in r for r in records)
    assert all(r["constraint_kl"] >= 0.0 for r in records)
    m = cfg.objective.multiplier
    ctl = LagrangeController(s["tau_aim"], lr=m.lr, kp=m.kp, ki=m.ki, init=m.init)
    replay = []
    for r in records:
        ctl.update(r["constraint_kl"])
        replay.append(ctl.value)
    assert replay == pytest.approx(res.multiplier_history, rel=1e-6)
    # the training loss is the distillation term: the Lagrangian of the KL, not of the labels' CE
    assert all(r["task_loss"] == pytest.approx(r["distill_logits"]) for r in records)


def test_certification_and_validation_read_the_kl(kl_run):
    cfg, res, _ = kl_run
    s = res.summary
    cert = [e for e in res.history if "certify_kl" in e]
    assert [e["step"] for e in cert] == [0, 5, 10]
    assert cert[0]["meets_ceiling"] is (cert[0]["certify_kl"] <= s["tau"])
    for e in cert[1:]:
        assert e["meets_ceiling"] is (e["certify_kl"] <= s["tau"])
    assert [e["step"] for e in res.history if "kl_teacher" in e] == [5, 10]  # every validation has it
    assert s["tau_validation"] == pytest.approx(0.05 * s["ce_dense_validation"])
    met = [e for e in cert[1:] if e["meets_ceiling"]]
    if met:
        kept = min(met, key=lambda e: (e["certify_density"], -e["step"]))
        assert s["snapshot_step"] == kept["step"] and s["kl_certified"] == pytest.approx(kept["certify_kl"])
        assert s["feasible"] is (s["kl_teacher"] <= s["tau_validation"])
    else:
        assert s["feasible"] is False and s["kl_certified"] is None


def test_an_unmeetable_kl_ceiling_is_infeasible_and_says_kl():
    res = train_run(kl_cfg(tau=1e-9, tau_rel=None))
    s = res.summary
    assert s["feasible"] is False and s["certified"] is False
    assert "certification rows" in s["infeasible_reason"]
    obj_cfg = copy.deepcopy(kl_cfg(tau_rel=0.05).objective)
    from econ_ray.objectives.constrained import ConstrainedObjective

    o = ConstrainedObjective(obj_cfg)
    o.tau, o.best_feasible = 0.01, (0.5, {})
    assert "validation KL to the teacher 0.0200" in o.infeasible_reason(0.02)


def test_a_regression_task_is_refused():
    cfg = kl_cfg()
    cfg.data.builtin = {"n_train": 200, "n_validation": 60, "max_len": 8}
    cfg.data.source = "builtin:similarity"
    with pytest.raises(ValueError, match="regression"):
        train_run(cfg)


def test_posttrain_with_the_kl_ceiling_keeps_the_kl_in_rows_and_trajectories(capsys, tmp_path):
    args = ["posttrain", "search_spaces/tiny_priced.yaml", "--eps", "0.1", "--no-continued", "--json"]
    for s in (
        "data.source=builtin:majority",
        "objective.dense_steps=20",
        "training.max_steps=10",
        "training.eval_every=5",
        "objective.constrain=kl",
        "objective.distill.weight=1.0",
        "objective.distill.temperature=1.0",
    ):
        args += ["--set", s]
    assert main([*args, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert "kl_teacher" in "\n".join(printed[:-1])  # the table shows the measured KL beside tau
    out = json.loads(printed[-1])
    row = next(r for r in out["rows"] if r["method"] == "gates")
    assert row["constrain"] == "kl" and row["kl_teacher"] is not None
    assert row["tau"] == pytest.approx(0.1 * out["ce_dense_heldout"], rel=1e-6)
    steps = out["trajectories"]["0.1"]["steps"]
    assert all(st["constraint_kl"] is not None and st["constraint_ce"] is None for st in steps)
    assert (tmp_path / "posttrain_trajectories.png").stat().st_size > 0
