"""A targeted search over a sampled range of targets, through the CLI as a user runs it (real Ray, Ray
Train with 2 DeepSpeed workers per trial, so the masks' gradients are averaged across workers, MLflow on
SQLite): every trial is cut to its own target, the Pareto set is on static GFLOPs and names its method,
and the registry budgets by static GFLOPs."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_guarded

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("econ-ray"))


@pytest.fixture(scope="module")
def targeted_search(tmp_path_factory, mlflow_template):
    tmp = tmp_path_factory.mktemp("targeted")
    cfg = yaml.safe_load((ROOT / "search_spaces" / "tiny_priced.yaml").read_text())
    cfg["name"] = "targeted_small"
    cfg["objective"] = {"kind": "targeted", "target_ratio": 0.5, "dense_steps": 60}
    cfg["data"]["builtin"] = {"n_train": 1000, "n_validation": 300, "min_len": 4, "max_len": 12}
    cfg["training"].update(max_steps=60, eval_every=30)
    cfg["search"] = {
        "trials": 3,
        "concurrency": 1,
        "sampler": "random",
        "registered_model": "econ-ray-targeted-small",
        "space": {"target_ratio": {"low": 0.3, "high": 0.9}},
        "dense_start": "shared",  # the dense model trained once, every trial starts from it
    }  # search.cost: static (the default)
    path = tmp / "targeted.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copyfile(mlflow_template, tmp / "mlflow.db")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    env.pop("RAY_ADDRESS", None)
    proc = run_guarded(
        [EXE, "search", str(path), "--run-dir", str(tmp / "run"), "--seed", "0", "--json"],
        env=env,
        cwd=tmp,
        stall=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = json.loads((tmp / "run" / "trials.json").read_text())
    return out, trials, env, proc.stdout


def test_every_trial_is_cut_to_its_own_target(targeted_search):
    _, trials, _, _ = targeted_search
    done = [t for t in trials if t["status"] == "complete"]
    assert len(done) == 3
    for t in done:
        m = t["metrics"]
        assert m["method"] == "targeted"
        assert m["target_ratio"] == pytest.approx(t["knobs"]["target_ratio"])
        assert abs(m["static_gflops"] - m["target_gflops"]) <= 0.02 * m["target_gflops"], m
        assert m["static_gflops"] <= m["target_gflops"] * (1 + 1e-9)


def test_the_pareto_set_is_on_static_gflops_and_names_its_method(targeted_search):
    out, trials, _, _ = targeted_search
    pareto = out["pareto"]
    assert pareto
    for row in pareto:
        assert row["method"] == "targeted" and row["cost_key"] == "static_gflops"
        assert abs(row["static_gflops"] - row["target_gflops"]) <= 0.02 * row["target_gflops"]
    pts = [(t["metrics"]["metric"], t["metrics"]["static_gflops"]) for t in trials if t["status"] == "complete"]
    for row in pareto:  # nothing cheaper is at least as good (Pearson: higher is better)
        assert not any(
            m >= row["metric"] and g <= row["static_gflops"] and (m > row["metric"] or g < row["static_gflops"])
            for m, g in pts
        )


def test_the_registry_budgets_by_static_gflops(targeted_search):
    out, _, env, _ = targeted_search
    budget = max(p["static_gflops"] for p in out["pareto"])
    proc = run_guarded(
        [EXE, "registry", "best", out["registered_model"], "--max-gflops", str(budget), "--json"],
        env=env,
        cwd=None,
        stall=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    best = json.loads(proc.stdout.strip().splitlines()[-1])
    assert best["cost_key"] == "static_gflops" and best["method"] == "targeted"
    assert best["static_gflops"] <= budget * 1.0001


def test_every_trial_starts_from_the_one_dense_model_the_search_trained(targeted_search):
    out, trials, _, stdout = targeted_search
    dense = out["dense"]
    folder = Path(out["run_dir"]) / "dense"
    assert (folder / "econ.json").is_file() and (folder / "model" / "config.json").is_file()
    assert dense["dense_steps"] == 60 and dense["metric_name"] == "pearson" and dense["train_s"] > 0
    for t in trials:
        m = t["metrics"]
        assert t["status"] == "complete"
        saved = json.loads((Path(t["checkpoint"]) / "econ.json").read_text())["summary"]
        assert saved["model"] == str(folder / "model") and saved["dense_steps"] == 0  # none trained it again
        assert m["dense_metric"] == pytest.approx(dense["metric"], abs=1e-5)
        assert m["dense_total_gflops"] == pytest.approx(dense["dense_total_gflops"])
    # the user sees the dense model being trained, and its metric beside the Pareto table
    assert "dense start: training the dense model once (60 steps)" in stdout
    assert f"dense model (every trial's start): pearson {dense['metric']:.4g}" in stdout
