"""What a user sees while ``econ-ray search`` runs: a live panel on a terminal (a pseudo-terminal
here) that updates as trials finish, one line per trial when the output is a pipe or a log, Ray's
own start-up output and worker warnings in RUN_DIR/ray_output.log instead, and --json's last line."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess

import pytest
from conftest import EXE, ROOT, SMALL, last_json, run_guarded
from progress_guard import StallGuard

pytestmark = pytest.mark.integration

ARGS = ["search", "search_spaces/tiny_priced.yaml", "--trials", "2", "--concurrency", "1", "--seed", "0", *SMALL]
# what Ray and Tune print when left alone (start-up banner, result folder, worker warnings)
RAY_CHATTER = re.compile(r"raylet|Started a local Ray instance|View detailed results|tensorboard|WARNING|\(pid=")


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "COLUMNS": "150"}


def test_non_interactive_output_has_one_line_per_trial_and_no_ray_chatter(tmp_path):
    run = tmp_path / "run"
    proc = run_guarded([EXE, *ARGS, "--run-dir", str(run), "--json"], env=_env(tmp_path), cwd=ROOT, stall=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    trial_lines = [ln for ln in lines if ln.startswith("trial ")]
    assert len(trial_lines) == 2, proc.stdout
    assert "1/2 done" in trial_lines[0] and "2/2 done" in trial_lines[1]
    assert all("effective_gflops" in ln and "Pareto set" in ln for ln in trial_lines)  # the file's cost
    both = proc.stdout + proc.stderr
    assert not RAY_CHATTER.search(both), RAY_CHATTER.search(both)
    assert "\x1b[" not in proc.stdout.split("Pareto set:")[0]  # no terminal codes in a log
    assert last_json(proc.stdout)["n_trials"] == 2
    assert (run / "ray_output.log").is_file()


def test_a_terminal_gets_a_live_panel_that_updates(tmp_path):
    run = tmp_path / "run"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [EXE, *ARGS, "--run-dir", str(run)],
        env={**_env(tmp_path), "TERM": "xterm-256color"},
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    # no progress (nothing drawn, no CPU in its process tree) for 1800 s fails the test
    guard = StallGuard(
        proc.pid,
        stall=1800,
        what="econ-ray search on a terminal",
        tail=lambda: b"".join(chunks).decode("utf-8", "replace")[-3000:],
    )
    received = 0
    # read until the process ends (the pty reports EOF/EIO once every writer has closed it)
    while True:
        ready, _, _ = select.select([master], [], [], 5.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
            received += len(data)
        elif proc.poll() is not None:
            break
        guard.check(output=received)
    proc.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    assert text.count("econ-ray search") >= 3, text[-3000:]  # drawn, then redrawn as trials end
    for state in ("0/2 trials", "1/2 trials", "2/2 trials"):
        assert state in text, (state, text[-3000:])
    assert "\x1b[" in text  # the panel redraws in place
    assert not re.search(r"^trial \w+ \[", text, re.M)  # no per-trial log lines on a terminal
    assert not RAY_CHATTER.search(text.split("Pareto set:")[0])
