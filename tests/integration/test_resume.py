"""Fault: the search driver is SIGKILLed after its first finished trial, and the resumed driver is
SIGKILLed again while a trial trains; ``econ-ray search --resume`` goes on. Finished trials are kept, the asked-for number of trials is reached, the MLflow parent run
is reused, the Pareto set is the one of all trials and no registry version is made twice."""

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import EXE, SMALL, last_json, wait_for

from econ_ray.search.pareto import pareto_front
from econ_ray.search.records import TrialRecord, points_from

pytestmark = pytest.mark.integration


def _records(run: Path) -> list[str]:
    folder = run / "trial_records"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def _optuna_states(run: Path) -> list[str]:
    with sqlite3.connect(run / "optuna.db") as db:
        return [s for (s,) in db.execute("select state from trials order by number")]


def test_killed_search_resumes(tmp_path, spawner, mlflow_db):
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_db(tmp_path / "mlflow.db")}
    args = [
        "search",
        "search_spaces/tiny_priced.yaml",
        "--trials",
        "3",
        "--concurrency",
        "1",
        "--seed",
        "0",
        "--json",
        *SMALL,
    ]
    driver = spawner.popen([EXE, *args, "--run-dir", str(run)], env)
    wait_for(lambda: len(_records(run)) >= 1, stall=900, what="the first finished trial", proc=driver)
    before = {r: json.loads((run / "trial_records" / f"{r}.json").read_text()) for r in _records(run)}
    killed = spawner.kill(driver)  # SIGKILL the driver and the local Ray cluster it started
    driver.wait()
    states_at_kill = _optuna_states(run)
    state = json.loads((run / "search_state.json").read_text())
    print(f"killed {len(killed)} processes; records at kill {len(before)}; optuna states at kill {states_at_kill}")

    # the resumed search is killed too, while a trial it started is training (a main-phase checkpoint
    # written, no record yet): a kill can fall at any instant of a trial's life
    cut_off = {d.name for d in (run / "tune" / "train").glob("trial_*")}
    resumer = spawner.popen([EXE, "search", "--resume", str(run), "--json"], env)

    def training_now():
        recorded = set(_records(run))
        for d in (run / "tune" / "train").glob("trial_*"):
            new = d.name not in cut_off and d.name.removeprefix("trial_") not in recorded
            if new and any(d.glob("state-main-*")):
                return d
        return None

    wait_for(training_now, stall=900, what="a resumed trial in its main phase", proc=resumer, poll=0.2)
    spawner.kill(resumer)
    resumer.wait()
    states_at_kill2 = _optuna_states(run)
    print(f"second kill mid-training; optuna states {states_at_kill2}")
    # the first resume closed every trial the first kill cut off (FAIL), whatever instant it hit
    assert states_at_kill2.count("FAIL") >= states_at_kill.count("RUNNING")

    proc = spawner.econ(["search", "--resume", str(run), "--json"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = last_json(proc.stdout)
    assert out["n_trials"] == 3 and out["resumed"] == 2
    assert out["mlflow_parent_run_id"] == state["parent_run_id"]
    trials = json.loads((run / "trials.json").read_text())
    assert len(trials) == 3 and len({t["trial_id"] for t in trials}) == 3
    for tid, rec in before.items():  # kept, not rerun
        same = next(t for t in trials if t["trial_id"] == tid)
        assert same["metrics"]["metric"] == rec["metrics"]["metric"] and same["order"] == rec["order"]
    # each interrupted Optuna trial was closed as FAIL and re-run with the same knobs
    running_at_kill = states_at_kill2.count("RUNNING")
    assert running_at_kill >= 1 and len(out["rerun"]) == running_at_kill
    for r in out["rerun"]:
        assert any(t["knobs"] == r["params"] for t in trials if t["trial_id"] not in before)
    assert _optuna_states(run).count("COMPLETE") == sum(t["status"] == "complete" for t in trials)
    assert "RUNNING" not in _optuna_states(run)

    # the Pareto set is the one of all trials, old and new
    recs = [TrialRecord(**t) for t in trials]
    front = pareto_front(points_from(recs), maximize_metric=True)
    pareto = json.loads((run / "pareto.json").read_text())["pareto"]
    assert sorted(p["trial_id"] for p in pareto) == sorted(p.trial_id for p in front)

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["econ_ray.resumes"] == "2"
    kids = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    finished = sorted(k.data.tags["trial_id"] for k in kids if k.info.status == "FINISHED")
    assert finished == sorted(t["trial_id"] for t in trials)
    # a cut-off trial has a child run only if Tune had started it: that run is ended KILLED
    assert {k.info.status for k in kids} <= {"FINISHED", "KILLED"}
    assert sum(k.info.status == "KILLED" for k in kids) <= states_at_kill.count("RUNNING") + running_at_kill

    def versions():
        return [
            v
            for v in client.search_model_versions(f"name = '{out['registered_model']}'")
            if v.tags.get("parent_run_id") == parent.info.run_id
        ]

    assert sorted(v.tags["trial_id"] for v in versions()) == sorted(p["trial_id"] for p in pareto)
    # resuming a finished search registers nothing twice and changes nothing
    again = spawner.econ(["search", "--resume", str(run), "--json"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert last_json(again.stdout)["n_trials"] == 3
    assert len(versions()) == len(pareto)
    assert json.loads((run / "pareto.json").read_text())["pareto"] == pareto
