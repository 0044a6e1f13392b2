"""Helpers of the fault-injection tests: start real ``econ-ray`` / ``mlflow server`` processes, wait for
what they write, and kill them (and only them, with the Ray processes they started) by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("econ-ray"))
# a small quickstart search: 3 trials one at a time, each a few seconds of training
SMALL = [
    "--set",
    "objective.dense_steps=30",
    "--set",
    "training.max_steps=30",
    "--set",
    "training.eval_every=15",
    "--set",
    "data.builtin.n_train=800",
    "--set",
    "data.builtin.n_validation=300",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, what: str, proc: subprocess.Popen | None = None, poll: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; fail if ``proc`` exits first or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to ``pid`` and every process it started (Ray's GCS, raylet and workers of its
    local cluster); returns the PIDs signalled."""
    pids = [pid, *descendants(pid)]
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    return pids


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


class Spawner:
    """Starts processes for one test and kills what is left of them (and their children) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.pids: set[int] = set()

    def popen(self, args: list[str], env: dict, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **kw,
        )
        self.procs.append(proc)
        return proc

    def econ(self, args: list[str], env: dict, timeout: float = 1200) -> subprocess.CompletedProcess:
        proc = self.popen([EXE, *args], env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> list[int]:
        pids = kill_tree(proc.pid, sig)
        self.pids.update(pids)
        return pids

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)
        time.sleep(1)
        for p in self.pids:  # children orphaned by a kill (reparented, so no longer found as descendants)
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def spawner():
    s = Spawner()
    yield s
    s.cleanup()


def start_mlflow_server(spawner: Spawner, folder: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on 127.0.0.1:port over a SQLite store in ``folder``; waits for /health."""
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = spawner.popen(
        [
            mlflow,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder}/server.db",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        {**os.environ},
    )

    def healthy():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, timeout=180, what="mlflow server /health", proc=proc)
    return proc
