"""A real 2-trial search (local Ray, 2 Ray Train workers per trial with DeepSpeed, MLflow on SQLite)
where the grid's second lambda (1e39) makes the penalised loss infinite: that trial fails with the
reason, the other completes and is the Pareto set; nothing of a planted secret reaches MLflow."""

import csv
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_guarded

pytestmark = pytest.mark.integration

EXE = str(Path(sys.executable).with_name("econ-ray"))
SECRET = "planted-secret-123"

CONFIG = {
    "name": "divergence",
    "model": {
        "name": "tiny-bert",
        "tiny": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64},
        "ffn_activation": "relu",
        "dropout": 0.0,
    },
    "data": {
        "source": "builtin:majority",
        "max_length": 16,
        "builtin": {"n_train": 300, "n_validation": 100, "min_len": 4, "max_len": 12},
    },
    "attention": {"mode": "gates"},
    "objective": {"kind": "penalised", "lam": 0.1, "alpha": 1.0, "beta": 0.0, "dense_steps": 20},
    "training": {"lr": 3e-3, "batch_size": 16, "max_steps": 20, "eval_every": 10},
    "search": {
        "trials": 2,
        "concurrency": 2,
        "sampler": "grid",
        "registered_model": "econ-ray-divergence",
        # grid = [0.01, 1e39]: the second price overflows float32, the loss is inf at step 1
        "space": {"lam": {"low": 0.01, "high": 1.0e39, "log": True}},
    },
    "distributed": {"workers": 2, "cpus_per_worker": 0.5, "deepspeed": True, "zero_stage": 2},
}


@pytest.fixture(scope="module")
def search(tmp_path_factory, mlflow_template):
    import shutil

    tmp = tmp_path_factory.mktemp("divergence")
    cfg = tmp / "divergence.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    (tmp / "store").mkdir()
    shutil.copyfile(mlflow_template, tmp / "store" / "mlflow.db")  # empty store with its tables (tests/conftest.py)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'store' / 'mlflow.db'}",
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    env.pop("RAY_ADDRESS", None)
    proc = run_guarded(
        [EXE, "search", str(cfg), "--run-dir", str(tmp / "run"), "--json"],
        env=env,
        cwd=tmp,
        stall=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc, env, tmp


def test_diverged_trial_fails_with_reason_and_others_go_on(search):
    out, proc, _, tmp = search
    assert out["n_trials"] == 2 and out["n_failed"] == 1
    (failure,) = out["failures"]
    assert failure["status"] == "failed" and failure["reason"].startswith("training diverged: loss is")
    assert "1 of 2 trials did not complete (1 diverged)" in proc.stdout
    trials = {t["trial_id"]: t for t in json.loads((tmp / "run" / "trials.json").read_text())}
    bad, good = trials[failure["trial_id"]], next(t for t in trials.values() if t["trial_id"] != failure["trial_id"])
    assert bad["status"] == "failed" and bad["reason"] == failure["reason"] and bad["knobs"]["lam"] > 1e38
    assert good["status"] == "complete" and good["metrics"]["metric"] is not None
    with open(tmp / "run" / "trials.csv") as f:
        rows = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert rows[bad["trial_id"]]["status"] == "failed" and rows[bad["trial_id"]]["reason"] == failure["reason"]
    assert [p["trial_id"] for p in out["pareto"]] == [good["trial_id"]]
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["n_failed"] == 1 and summary["failures"][0]["reason"] == failure["reason"]


def test_mlflow_marks_the_trial_failed_and_registers_only_the_good_one(search):
    from mlflow.tracking import MlflowClient

    out, _, env, _ = search
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(out["mlflow_parent_run_id"])
    assert parent.data.metrics["n_failed"] == 1 and parent.data.metrics["pareto_size"] == 1
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    by_trial = {c.data.tags["trial_id"]: c for c in children}
    bad = by_trial[out["failures"][0]["trial_id"]]
    assert bad.info.status == "FAILED" and bad.data.tags["failure_reason"].startswith("training diverged")
    assert "metric" not in bad.data.metrics
    versions = client.search_model_versions("name = 'econ-ray-divergence'")
    assert len(versions) == 1 and versions[0].tags["trial_id"] != out["failures"][0]["trial_id"]


def test_planted_env_secret_is_nowhere_in_mlflow(search):
    _, _, _, tmp = search
    store = tmp / "store"
    con = sqlite3.connect(store / "mlflow.db")
    hits = []
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        for row in con.execute(f'SELECT * FROM "{table}"'):
            if SECRET in " ".join(map(str, row)):
                hits.append(table)
    con.close()
    hits += [str(f) for f in store.rglob("*") if f.is_file() and SECRET.encode() in f.read_bytes()]
    assert hits == []
