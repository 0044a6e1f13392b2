"""A real search: local Ray cluster, trials on 2 Ray Train workers with DeepSpeed on CPU, Optuna,
MLflow on SQLite, the model registry, and the registry lookup by budget (through the CLI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("econ-ray"))
SHORT = ["--set", "objective.dense_steps=80", "--set", "training.max_steps=80", "--set", "training.eval_every=40",
         "--set", "data.builtin.n_train=1200", "--set", "data.builtin.n_validation=400"]


def _run(args, env, timeout=900):
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    proc = _run(["search", "search_spaces/quickstart.yaml", "--trials", "4", "--concurrency", "2", "--seed", "0",
                 "--run-dir", str(tmp / "run"), "--json", *SHORT], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, env, tmp


def test_pareto_set_is_non_dominated_and_feasible(search):
    out, _, _ = search
    assert out["n_trials"] == 4
    pareto = out["pareto"]
    assert pareto, "empty Pareto set"
    for a in pareto:
        for b in pareto:
            if a is not b:
                assert not (b["metric"] >= a["metric"] and b["effective_gflops"] <= a["effective_gflops"]
                            and (b["metric"] > a["metric"] or b["effective_gflops"] < a["effective_gflops"]))
    trials = {t["trial_id"]: t for t in json.loads(Path(out["run_dir"], "trials.json").read_text())}
    for p in pareto:
        assert trials[p["trial_id"]]["status"] == "complete" and trials[p["trial_id"]]["feasible"]
    assert out["hypervolume"] > 0
    for name in ("pareto.csv", "pareto.json", "pareto.png", "hypervolume.csv", "trials.csv", "optuna.db", "config.yaml"):
        assert Path(out["run_dir"], name).is_file(), name


def test_mlflow_parent_children_and_registry(search):
    import mlflow
    from mlflow.tracking import MlflowClient

    out, env, _ = search
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(out["mlflow_parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4
    for c in children:
        assert {"lam", "alpha", "beta"} <= set(c.data.params)
        assert "metric" in c.data.metrics and "effective_gflops" in c.data.metrics
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.csv", "pareto.png", "hypervolume.csv"} <= arts
    versions = client.search_model_versions(f"name = '{out['registered_model']}'")
    assert len(versions) == len(out["pareto"])
    for v in versions:
        for tag in ("metric", "metric_name", "effective_gflops", "dense_gflops", "seq_len", "lam", "alpha", "beta",
                    "objective", "parent_run_id"):
            assert tag in v.tags, tag
        assert v.tags["parent_run_id"] == out["mlflow_parent_run_id"]
    del mlflow


def test_registry_best_honours_the_budget(search):
    out, env, _ = search
    name = out["registered_model"]
    gflops = sorted(p["effective_gflops"] for p in out["pareto"])
    proc = _run(["registry", "best", name, "--max-gflops", str(gflops[0]), "--json"], env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    best = json.loads(proc.stdout.strip().splitlines()[-1])
    assert best["effective_gflops"] <= gflops[0] * 1.0001
    assert {"name", "version", "metric", "effective_gflops"} <= set(best)
    proc = _run(["registry", "best", name, "--max-gflops", str(gflops[0] / 10), "--json"], env, timeout=120)
    assert proc.returncode == 1 and "no version" in proc.stderr


def test_registered_model_reproduces_its_metric(search):
    from econ_ray.config import load_config
    from econ_ray.data import encode_split, load_task
    from econ_ray.tracking import load_registered
    from econ_ray.training.evaluate import evaluate

    out, env, _ = search
    model, tok, meta = load_registered(f"{out['registered_model']}@rank-1", uri=env["MLFLOW_TRACKING_URI"])
    cfg = load_config(Path(out["run_dir"]) / "config.yaml")
    d = cfg.data
    splits = load_task(d.source, train_size=d.train_size, eval_size=d.eval_size, heldout_fraction=d.heldout_fraction,
                       seed=cfg.training.seed, builtin_options=d.builtin)
    val = encode_split(splits.validation, splits.task, tok, d.max_length)
    ev = evaluate(model, model.econ_runtime, val, splits.task, batch_size=64, seq_len=d.max_length)
    assert ev["metric"] == pytest.approx(out["pareto"][0]["metric"], abs=1e-9)
