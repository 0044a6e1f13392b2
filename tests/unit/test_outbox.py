"""Tracking through an outage: operations the store refuses are kept in order on disk and replayed
later; two processes writing one SQLite store at once keep both sets of runs intact."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from econ_ray.tracking import MlflowTracker
from econ_ray.tracking.outbox import BufferedTracker, outbox_files, pending_ops, replay


def _dead_uri():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_outage_fills_the_outbox_and_replay_uploads_it(tmp_path, monkeypatch, mlflow_db):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = mlflow_db(tmp_path / "mlflow.db")
    real = MlflowTracker(uri, "outage")
    parent = real.start_parent("s", params={"trials": 2})
    t = BufferedTracker(real, tmp_path / "run")
    t.start_child("a", params={"lam": 1.0})
    t.log_metrics("a", {"eval_metric": 0.1}, step=10)
    assert t.offline_reason is None and outbox_files(tmp_path / "run") == []

    real.client = MlflowClient(_dead_uri())  # the store goes away mid-search
    t.log_metrics("a", {"eval_metric": 0.2}, step=20)
    assert t.offline_reason is not None
    t.finish_child("a", metrics={"metric": 0.3})
    t.start_child("b", params={"lam": 2.0})  # a trial that started during the outage
    t.log_series("b", "lagrange_multiplier", [0.0, 0.5, 1.0])
    t.finish_child("b", status="FAILED", reason="diverged")
    t.log_parent_metrics({"hypervolume_final": 0.7})
    t.end_parent()
    assert t.pending == 7 == pending_ops(tmp_path / "run")
    ops = [json.loads(x)["op"] for x in t.outbox_file.read_text().splitlines()]
    assert ops == [
        "log_metrics",
        "finish_child",
        "start_child",
        "log_series",
        "finish_child",
        "log_parent_metrics",
        "end_parent",
    ]

    back = MlflowTracker(uri, "outage")  # the store is back: ``econ-ray sync``
    back.resume_parent(parent, set_running=False)
    out = replay(tmp_path / "run", back)
    assert out["applied"] == 7 and pending_ops(tmp_path / "run") == 0
    c = back.client
    a, b = c.get_run(back.child_id("a")), c.get_run(back.child_id("b"))
    assert [m.value for m in c.get_metric_history(a.info.run_id, "eval_metric")] == [0.1, 0.2]
    assert a.data.metrics["metric"] == 0.3 and a.info.status == "FINISHED"
    assert b.info.status == "FAILED" and b.data.tags["failure_reason"] == "diverged" and b.data.params["lam"] == "2.0"
    assert [m.value for m in c.get_metric_history(b.info.run_id, "lagrange_multiplier")] == [0.0, 0.5, 1.0]
    p = c.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.metrics["hypervolume_final"] == 0.7
    assert replay(tmp_path / "run", back)["applied"] == 0  # nothing twice


WRITER = textwrap.dedent("""
    import sys
    from econ_ray.tracking import MlflowTracker
    from econ_ray.tracking.outbox import BufferedTracker
    uri, name, run_dir = sys.argv[1:4]
    real = MlflowTracker(uri, "shared")
    real.start_parent(name, params={"who": name})
    t = BufferedTracker(real, run_dir)
    for i in range(12):
        t.start_child(f"{name}-{i}", params={"lam": i})
        for step in range(5):
            t.log_metrics(f"{name}-{i}", {"eval_metric": i + step / 10}, step=step)
        t.finish_child(f"{name}-{i}", metrics={"metric": float(i)})
    t.end_parent()
    print(real.parent_run_id, t.lock_waits)
""")


def test_two_searches_share_one_sqlite_store(tmp_path, mlflow_db):
    from mlflow.tracking import MlflowClient

    uri = mlflow_db(tmp_path / "mlflow.db")
    MlflowTracker(uri, "shared")  # the schema exists, as it does once any search has used the store
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, name, str(tmp_path / name)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("x", "y")
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    for name in ("x", "y"):
        assert outbox_files(tmp_path / name) == [], f"{name} lost the store: {list((tmp_path / name).rglob('*'))}"
    client = MlflowClient(uri)
    for (out, _), name in zip(outs, ("x", "y")):
        parent, waits = out.strip().splitlines()[-1].split()
        print(f"writer {name}: {waits} waits on SQLite's lock")
        exp = client.get_run(parent).info.experiment_id
        kids = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'", max_results=100)
        assert sorted(k.data.tags["trial_id"] for k in kids) == sorted(f"{name}-{i}" for i in range(12))
        for k in kids:
            i = int(k.data.tags["trial_id"].split("-")[1])
            assert k.info.status == "FINISHED" and k.data.metrics["metric"] == float(i)
            assert len(client.get_metric_history(k.info.run_id, "eval_metric")) == 5
        assert client.get_run(parent).info.status == "FINISHED"


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
