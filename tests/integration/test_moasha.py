"""A real search with the MOASHA scheduler: stopped trials are PRUNED in Optuna and absent from the Pareto set
and the registry."""

import json
import os
import sys
from pathlib import Path

import optuna
import pytest
from conftest import run_guarded

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("econ-ray"))
SHORT = [
    "--set",
    "objective.dense_steps=40",
    "--set",
    "training.max_steps=90",
    "--set",
    "training.eval_every=30",
    "--set",
    "data.builtin.n_train=800",
    "--set",
    "data.builtin.n_validation=300",
    "--set",
    "search.scheduler.kind=moasha",
    "--set",
    "search.scheduler.grace_period=30",
    "--set",
    "search.scheduler.reduction_factor=3",
]


def test_moasha_search_stops_trials_and_keeps_them_out(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = run_guarded(
        [
            EXE,
            "search",
            "search_spaces/tiny_priced.yaml",
            "--trials",
            "4",
            "--concurrency",
            "1",
            "--seed",
            "0",
            "--run-dir",
            str(tmp_path / "run"),
            "--json",
            *SHORT,
        ],
        env=env,
        cwd=ROOT,
        stall=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = json.loads(Path(out["run_dir"], "trials.json").read_text())
    stopped = {t["trial_id"] for t in trials if t["status"] == "stopped"}
    assert stopped, "MOASHA stopped no trial (4 sequential trials, eta 3: the 2nd-4th face a rung of >= 2)"
    assert not stopped & {p["trial_id"] for p in out["pareto"]}
    study = optuna.load_study(study_name="tiny_priced", storage=f"sqlite:///{Path(out['run_dir'], 'optuna.db')}")
    states = {t.user_attrs.get("tune_trial_id"): t.state for t in study.trials}
    for tid in stopped:
        assert states[tid] == optuna.trial.TrialState.PRUNED
    from mlflow.tracking import MlflowClient

    versions = MlflowClient(env["MLFLOW_TRACKING_URI"]).search_model_versions(f"name = '{out['registered_model']}'")
    assert not stopped & {v.tags.get("trial_id") for v in versions}
    assert len(versions) == len(out["pareto"])
