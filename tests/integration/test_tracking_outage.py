"""Fault: the MLflow tracking server is stopped after the first finished trial. The search trains on,
keeps what it could not log in RUN_DIR/tracking_outbox and lists it at the end; once the server is
back, ``econ-ray sync RUN_DIR`` uploads it and every trial's run, metrics and the Pareto models are in
the store."""

import json
import os
import signal

import pytest
from conftest import EXE, SMALL, communicate_guarded, free_port, last_json, start_mlflow_server, wait_for

pytestmark = pytest.mark.integration


def test_search_survives_a_tracking_outage_and_syncs(tmp_path, spawner, mlflow_db):
    from mlflow.tracking import MlflowClient

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow_db(tmp_path / "server.db")  # the server's store starts empty with its tables made (tests/conftest.py)
    server = start_mlflow_server(spawner, tmp_path, port)
    run = tmp_path / "run"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    driver = spawner.popen(
        [
            EXE,
            "search",
            "search_spaces/tiny_priced.yaml",
            "--trials",
            "3",
            "--concurrency",
            "1",
            "--run-dir",
            str(run),
            "--json",
            *SMALL,
        ],
        env,
    )
    wait_for(
        lambda: list((run / "trial_records").glob("*.json")) if (run / "trial_records").is_dir() else None,
        stall=900,
        what="the first finished trial",
        proc=driver,
    )
    spawner.kill(server, signal.SIGTERM)  # the tracking server goes away
    server.wait(timeout=60)
    out, err = communicate_guarded(driver, stall=1500)
    assert driver.returncode == 0, err[-3000:]
    res = last_json(out)
    assert res["n_trials"] == 3 and res["n_failed"] == 0  # trials kept training
    assert res["pending_tracking_ops"] > 0 and res["tracking_outbox"].startswith(str(run / "tracking_outbox"))
    assert "econ-ray sync" in out
    assert all(p["version"] is None for p in res["pareto"])  # registration waits in the outbox too
    print(f"outbox: {res['pending_tracking_ops']} operations ({res['tracking_error']})")

    start_mlflow_server(spawner, tmp_path, port)  # the server is back, same store
    proc = spawner.econ(["sync", str(run), "--json"], env, stall=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    synced = last_json(proc.stdout)
    assert synced["applied"] == res["pending_tracking_ops"] and synced["pending"] == 0

    client = MlflowClient(uri)
    parent = client.get_run(res["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and "hypervolume_final" in parent.data.metrics
    kids = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    trials = json.loads((run / "trials.json").read_text())
    assert sorted(k.data.tags["trial_id"] for k in kids) == sorted(t["trial_id"] for t in trials)
    for k in kids:
        assert k.info.status == "FINISHED"
        assert {"metric", "effective_gflops"} <= set(k.data.metrics)
        assert client.get_metric_history(k.info.run_id, "eval_metric"), k.data.tags["trial_id"]
    pareto = json.loads((run / "pareto.json").read_text())["pareto"]
    versions = client.search_model_versions(f"name = '{res['registered_model']}'")
    assert sorted(v.tags["trial_id"] for v in versions) == sorted(p["trial_id"] for p in pareto)
    assert all(isinstance(p["version"], int) for p in pareto)
    again = spawner.econ(["sync", str(run), "--json"], env, stall=300)  # nothing twice
    assert again.returncode == 0 and last_json(again.stdout)["applied"] == 0
