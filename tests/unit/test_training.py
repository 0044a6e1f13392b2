"""One training run end to end on a tiny model and a built-in task (fast)."""

import math

import pytest
import torch

from econ_ray.config import parse_config
from econ_ray.training import RunHooks, train_run
from econ_ray.training.engine import TorchEngine


def tiny_cfg(attention=None, **objective):
    return parse_config(
        {
            "model": {
                "name": "tiny-bert",
                "tiny": {"layers": 2, "hidden": 32, "heads": 4, "intermediate": 64},
                "ffn_activation": "relu",
                "dropout": 0.0,
            },
            "data": {
                "source": "builtin:majority",
                "max_length": 24,
                "heldout_fraction": 0.2,
                "builtin": {"n_train": 600, "n_validation": 200, "max_len": 20, "noise_pct": 10},
            },
            "attention": attention or {"mode": "gates"},
            "objective": {"dense_steps": 60, **objective},
            "training": {
                "lr": 3e-3,
                "gate_lr": 5e-2,
                "batch_size": 32,
                "max_steps": 60,
                "eval_every": 30,
                "seed": 0,
                "progress": False,
            },
        },
        "test.yaml",
    )


@pytest.fixture(scope="module")
def runs():
    free = train_run(tiny_cfg(kind="penalised", lam=0.0, alpha=1.0, beta=0.0))
    priced = train_run(tiny_cfg(kind="penalised", lam=1.0, alpha=1.0, beta=0.0))
    return free, priced


def test_price_on_attention_lowers_density(runs):
    free, priced = runs
    assert priced.summary["attention_density"] < 0.8 * free.summary["attention_density"]


def test_summary_has_every_metric(runs):
    s = runs[1].summary
    for key in (
        "task",
        "metric_name",
        "metric",
        "ce",
        "dense_gflops",
        "effective_gflops",
        "seq_len",
        "attention_density",
        "ffn_density",
        "gini",
        "entropy_bits",
        "lam",
        "alpha",
        "beta",
        "tau",
        "objective",
        "attention",
        "accuracy",
        "mcc",
    ):
        assert key in s, key
    assert s["seq_len"] == 24
    assert 0 < s["effective_gflops"] <= s["dense_total_gflops"]  # the whole cost against the whole dense cost
    assert 0 <= s["attention_density"] <= 1 and 0 <= s["ffn_density"] <= 1
    assert math.isfinite(s["gini"]) and math.isfinite(s["entropy_bits"])


def test_same_seed_same_result(runs):
    again = train_run(tiny_cfg(kind="penalised", lam=0.0, alpha=1.0, beta=0.0))
    assert again.summary["metric"] == runs[0].summary["metric"]
    assert again.summary["ce"] == pytest.approx(runs[0].summary["ce"], rel=1e-6)


def constrained_cfg(**objective):
    """The tiny task with a dense model trained well below chance (CE_dense ~0.31 vs ln 2 = 0.69), a 5 %
    ceiling and a snapshot candidate every 10 steps."""
    # the multiplier of the old defaults (lr 0.05, mu from 0) suits this 60-step run best (39 % density);
    # the schema defaults (lr 1, mu from 1) meet the ceiling here too, at 95 % (docs/results.md, section 5a)
    objective.setdefault("multiplier", {"lr": 0.05, "init": 0.0})
    cfg = tiny_cfg(kind="constrained", tau_rel=0.05, dense_steps=200, **objective)
    cfg.training.eval_every = 10
    return cfg


def _ce(model, split, rows):
    """CE of ``rows`` of ``split`` under deterministic (evaluation) gates, computed here from the model."""
    model.eval()
    with torch.no_grad():
        return float(model(**split.batch(rows)).loss)


@pytest.fixture(scope="module")
def constrained():
    return train_run(constrained_cfg())


def test_constrained_run_reaches_a_certified_sparse_snapshot(constrained):
    s = constrained.summary
    assert len(constrained.multiplier_history) == s["steps"] == 60
    assert s["tau"] == pytest.approx(1.05 * s["ce_dense"])
    assert s["tau"] < 0.6 * math.log(2)  # a trained reference, far from chance: closing every gate breaks it
    assert s["tau_aim"] == pytest.approx(s["ce_dense"] + 0.65 * (s["tau"] - s["ce_dense"]))
    # a snapshot of the post-training itself (never the step-0 model), certified on its own rows
    assert s["certified"] is True and s["snapshot_step"] > 0 and s["ce_certified"] <= s["tau"]
    assert s["attention_density"] < 0.6  # the gates did close where the ceiling allowed
    # feasible exactly when validation met its own ceiling too: (1 + eps) x the dense validation CE (with
    # 10 % label noise the CE of 60 certification and 200 validation rows differs by more than the 5 %
    # slack, so tau itself would decide by the flips they drew). Which way it goes is not asserted.
    assert s["tau_validation"] == pytest.approx(1.05 * s["ce_dense_validation"])
    assert s["feasible"] is (s["ce"] <= s["tau_validation"])
    assert (s["infeasible_reason"] is None) is s["feasible"]


def test_ceiling_is_certified_on_heldout_rows_the_multiplier_never_reads(constrained):
    p = constrained.prepared
    n = len(p.heldout)
    certify = list(range(n // 2, n))  # the second half; the multiplier's batches come from the first
    assert constrained.summary["ce_certified"] == pytest.approx(_ce(p.model, p.heldout, certify), rel=1e-5)
    assert constrained.summary["ce_certified"] != pytest.approx(_ce(p.model, p.heldout, list(range(n // 2))), rel=1e-3)
    assert constrained.summary["ce_dense"] != pytest.approx(constrained.summary["ce_heldout"], rel=1e-6)
    kept = [
        h for h in constrained.history if h.get("step") == constrained.summary["snapshot_step"] and "certify_ce" in h
    ]
    assert kept and kept[0]["certify_ce"] == pytest.approx(constrained.summary["ce_certified"])


class _Frozen:
    """An engine that never changes the model: every measured CE is reproducible after the run."""

    def __init__(self, model):
        self.module = model

    def backward(self, loss):
        pass

    def step(self):
        pass

    lr = 0.0

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_multiplier_reads_deterministic_ce_of_heldout_drive_batches_in_order():
    cfg = constrained_cfg(constraint_batch_size=16)
    cfg.training.max_steps = 8
    t = cfg.training

    def engines(model, steps, phase):
        if phase == "main":
            return _Frozen(model)
        return TorchEngine(model, lr=t.lr, gate_lr=t.gate_lr, weight_decay=0.0, total_steps=steps, warmup_ratio=0.1)

    records = []
    res = train_run(cfg, engine_factory=engines, hooks=RunHooks(on_step=records.append))
    p = res.prepared
    drive = len(p.heldout) // 2  # 60 rows: batches of 16, 16, 16, 12, then again from the start
    starts = [0, 16, 32, 48, 0, 16, 32, 48]
    p.runtime.set_mode("gates")
    for rec, start in zip(records, starts):
        rows = list(range(start, min(start + 16, drive)))
        assert rec["constraint_ce"] == pytest.approx(_ce(p.model, p.heldout, rows), rel=1e-6), rec["step"]
    assert len(set(r["constraint_ce"] for r in records)) == 4  # four different batches, so the test can tell


def test_a_run_whose_only_feasible_model_is_the_start_is_infeasible(monkeypatch):
    from econ_ray.objectives import constrained as C

    # the constraint removed from the primal loss: every gate closes, only the step-0 model met tau
    monkeypatch.setattr(C.LagrangeController, "lagrangian", lambda self, attn, task: attn + 0.0 * task)
    s = train_run(constrained_cfg()).summary
    assert s["feasible"] is False and s["certified"] is False and s["snapshot_step"] is None
    assert "only the starting model" in s["infeasible_reason"]
    assert s["ce"] > s["tau"]


def test_early_stopping_stops():
    cfg = tiny_cfg(kind="penalised", lam=0.0)
    cfg.training.max_steps = 200
    cfg.training.eval_every = 10
    cfg.training.early_stopping_patience = 1
    res = train_run(cfg)
    assert res.summary["stopped_early"] is True
    assert res.summary["steps"] < 200


def test_topk_needs_no_retraining_and_lowers_flops(topk_run):
    s = topk_run.summary
    assert s["attention"] == "topk"
    assert s["attention_density"] < 0.5
    assert s["effective_attention_gflops"] < s["attention_gflops"]


def test_training_with_the_progress_bar_warns_nothing(capsys):
    """The bar's postfix reads the loss without touching autograd: no warning lands inside the bar."""
    import warnings

    cfg = tiny_cfg(kind="penalised", lam=0.1, alpha=1.0, beta=0.0)
    cfg = cfg.model_copy(
        update={
            "training": cfg.training.model_copy(update={"progress": True, "max_steps": 8, "eval_every": 8}),
            "objective": cfg.objective.model_copy(update={"dense_steps": 4}),
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_run(cfg)
    ours = [w for w in caught if "econ_ray" in str(w.filename)]
    assert ours == [], [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
