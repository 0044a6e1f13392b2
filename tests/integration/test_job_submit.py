"""`ray job submit` of a short quickstart search to a local Ray head started here, as the README shows."""

import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _wait_http(url: str, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answering (401 without a token): the dashboard is up
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(1)
    raise TimeoutError(url)


def test_ray_job_submit_quickstart(tmp_path):
    port = random.randint(20000, 40000)
    dport = port + 1
    # as after `source .venv/bin/activate` (which sets RAY_AUTH_MODE=token, see the Makefile)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dport}", "--num-cpus=2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{dport}/api/version", 120)
        runtime_env = ('{"env_vars": {"MLFLOW_TRACKING_URI": "sqlite:///' + str(tmp_path / "mlflow.db") + '"}}')
        proc = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dport}", "--working-dir", ".",
             "--runtime-env-json", runtime_env, "--",
             "econ-ray", "search", "search_spaces/quickstart.yaml", "--trials", "2", "--concurrency", "1",
             "--run-dir", str(tmp_path / "run"), "--set", "objective.dense_steps=40", "--set", "training.max_steps=40",
             "--json"],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=900,
        )
        assert "succeeded" in proc.stdout.lower(), (proc.stdout[-3000:], proc.stderr[-2000:])
        assert (tmp_path / "run" / "pareto.json").is_file()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
