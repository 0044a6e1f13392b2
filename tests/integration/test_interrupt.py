"""A search stopped by SIGTERM (what ``ray job stop``, a scheduler or ``kill`` send; Ctrl-C's SIGINT
takes the same path) ends cleanly: exit 143, the ``--resume`` command printed, the MLflow parent
and the cut-off trial's child run KILLED (none left RUNNING), and ``--resume`` completes the search."""

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import EXE, SMALL, communicate_guarded, last_json, wait_for

pytestmark = pytest.mark.integration


def _training(run: Path) -> bool:
    return any(d.glob("state-main-*") for d in (run / "tune" / "train").glob("trial_*"))


def test_sigterm_closes_runs_killed_and_resume_completes(tmp_path, spawner, mlflow_db):
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_db(tmp_path / "mlflow.db")}
    args = ["search", "search_spaces/tiny_priced.yaml", "--trials", "2", "--concurrency", "1", "--json", *SMALL]
    driver = spawner.popen([EXE, *args, "--run-dir", str(run)], env)
    wait_for(lambda: _training(run), stall=900, what="a trial in its main phase", proc=driver, poll=0.2)
    driver.send_signal(signal.SIGTERM)  # the driver only, as `kill PID` would
    _, err = communicate_guarded(driver, stall=600)
    assert driver.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert f"econ-ray search --resume {run}" in err
    assert "Traceback" not in err

    state = json.loads((run / "search_state.json").read_text())
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "KILLED" and parent.data.tags["econ_ray.interrupted"] == "SIGTERM"
    kids = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert kids and all(k.info.status in ("FINISHED", "KILLED") for k in kids), [k.info.status for k in kids]
    assert any(k.info.status == "KILLED" for k in kids)  # the trial that was training

    proc = spawner.econ(["search", "--resume", str(run), "--json"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = last_json(proc.stdout)
    assert out["n_trials"] == 2 and out["resumed"] == 1
    assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"
    trials = json.loads((run / "trials.json").read_text())
    assert len(trials) == 2 and all(t["status"] == "complete" for t in trials)
