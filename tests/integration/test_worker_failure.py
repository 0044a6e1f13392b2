"""Fault: one Ray Train worker of a running trial is SIGKILLed after its first main-phase checkpoint.
Ray Train restarts the worker group (FailureConfig), the workers load the last training state and go
on from its step, and the search finishes with the trial complete."""

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import EXE, communicate_guarded, descendants, last_json, wait_for

pytestmark = pytest.mark.integration

LONGER = [
    "--set",
    "objective.dense_steps=40",
    "--set",
    "training.max_steps=240",
    "--set",
    "training.eval_every=40",
    "--set",
    "training.checkpoint_every=20",
    "--set",
    "data.builtin.n_train=800",
    "--set",
    "data.builtin.n_validation=300",
]


def test_killed_worker_resumes_from_its_checkpoint(tmp_path, spawner, mlflow_db):
    run = tmp_path / "run"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_db(tmp_path / "mlflow.db")}
    driver = spawner.popen(
        [
            EXE,
            "search",
            "search_spaces/tiny_priced.yaml",
            "--trials",
            "1",
            "--concurrency",
            "1",
            "--run-dir",
            str(run),
            "--json",
            *LONGER,
        ],
        env,
    )
    train = run / "tune" / "train"

    def main_checkpoint_and_pid():
        # a checkpoint folder appears when its upload starts; Ray Train commits it when every worker's
        # report is in, so wait for the second main-phase one: the first is then (almost surely) committed
        ckpts = sorted(train.glob("trial_*/state-main-*"))
        pids = sorted(train.glob("trial_*/worker_pids/rank1.pid"))
        return (ckpts[-1], pids[0]) if len(ckpts) >= 2 and pids else None

    ckpt, pid_file = wait_for(main_checkpoint_and_pid, stall=900, what="a main-phase checkpoint", proc=driver, poll=0.2)
    pid = int(pid_file.read_text())
    assert pid in descendants(driver.pid), "the worker must belong to this test's Ray cluster"
    os.kill(pid, signal.SIGKILL)
    print(f"killed Ray Train worker rank 1 (pid {pid}) after {ckpt.name}")
    out, err = communicate_guarded(driver, stall=1200)
    assert driver.returncode == 0, err[-3000:]
    res = last_json(out)
    assert res["n_trials"] == 1 and res["n_failed"] == 0
    trial = json.loads((run / "trials.json").read_text())[0]
    m = trial["metrics"]
    assert trial["status"] == "complete"
    print(f"resumed from {m['resumed_from_phase']} step {m['resumed_from_step']} ({m['restarts']} restart(s))")
    assert m["restarts"] >= 1 and m["resumed_from_step"] > 0 and m["resumed_from_phase"] in ("dense", "main")
    assert m["steps"] == 240
    history = json.loads((Path(trial["checkpoint"]) / "history.json").read_text())
    assert history["restarts"] == m["restarts"] and history["resumed_from_step"] == m["resumed_from_step"]
    # every evaluation of the uninterrupted schedule is there once (the resumed run carries the history on)
    assert [e["step"] for e in history["evaluations"]] == [40, 80, 120, 160, 200, 240]
