"""One training run end to end on a tiny model and a built-in task (fast)."""

import math

import pytest

from econ_ray.config import parse_config
from econ_ray.training import train_run


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
    assert 0 < s["effective_gflops"] <= s["dense_gflops"]
    assert 0 <= s["attention_density"] <= 1 and 0 <= s["ffn_density"] <= 1
    assert math.isfinite(s["gini"]) and math.isfinite(s["entropy_bits"])


def test_same_seed_same_result(runs):
    again = train_run(tiny_cfg(kind="penalised", lam=0.0, alpha=1.0, beta=0.0))
    assert again.summary["metric"] == runs[0].summary["metric"]
    assert again.summary["ce"] == pytest.approx(runs[0].summary["ce"], rel=1e-6)


def test_constrained_run_logs_multiplier_every_step_and_meets_ceiling():
    res = train_run(tiny_cfg(kind="constrained", tau_rel=0.05))
    s = res.summary
    assert len(res.multiplier_history) == s["steps"] == 60
    assert s["tau"] == pytest.approx(1.05 * s["ce_dense"])
    assert s["feasible"] is True
    assert s["ce_heldout"] <= s["tau"] + 1e-9  # the kept snapshot met the ceiling on held-out data


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
