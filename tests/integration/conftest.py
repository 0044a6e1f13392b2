"""Helpers of the fault-injection tests: start real ``econ-ray`` / ``mlflow server`` processes, wait for
what they write, and kill them (and only them, with the Ray processes they started) by PID.

No wait here has a fixed wall-clock timeout: the suite shares a busy machine, so a process is given up
on only when it stops progressing (progress_guard.py: no output and no CPU in its process tree for a
stall window, or a generous cap)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from progress_guard import communicate_guarded, kill_tree, popen_to_files, wait_for
from progress_guard import descendants as descendants  # for the tests, with the helpers below
from progress_guard import run_guarded as run_guarded

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


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


class Spawner:
    """Starts processes for one test and kills what is left of them (and their children) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.pids: set[int] = set()
        self.folder = Path(tempfile.mkdtemp(prefix="econ-spawner-"))  # the processes' stdout and stderr

    def popen(self, args: list[str], env: dict, **kw) -> subprocess.Popen:
        """Starts ``args`` in its own session, stdout and stderr to files (read them with
        ``communicate_guarded``; a pipe nobody reads while the test waits could block the process)."""
        proc = popen_to_files(args, self.folder, env=env, cwd=ROOT, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def econ(self, args: list[str], env: dict, stall: float = 1200) -> subprocess.CompletedProcess:
        """``econ-ray args`` to its end, failed (and killed) if it makes no progress for ``stall`` s."""
        proc = self.popen([EXE, *args], env)
        out, err = communicate_guarded(proc, stall=stall)
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
        shutil.rmtree(self.folder, ignore_errors=True)


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

    wait_for(healthy, stall=180, what="mlflow server /health", proc=proc)
    return proc
