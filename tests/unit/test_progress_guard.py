"""The integration tests' hang guard (tests/integration/progress_guard.py): a command fails only when it
stops progressing (no output, no CPU in its process tree), never because it is slow. Small Python
children, a few seconds each."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import psutil
import pytest

_PATH = Path(__file__).resolve().parents[1] / "integration" / "progress_guard.py"
_spec = importlib.util.spec_from_file_location("_progress_guard_under_test", _PATH)
assert _spec is not None and _spec.loader is not None
guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(guard)

PY = sys.executable
# prints a line every 0.4 s for 3.2 s, sleeping in between (next to no CPU)
SLOW_PRINTER = "import time\nfor i in range(8):\n    print(i, flush=True)\n    time.sleep(0.4)\n"
# busy for `secs` seconds, silent
BURN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"
# writes its PID and a line on stderr, starts a silent sleeping child (PID written too), then sleeps
SLEEPER = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\n"
    "print('about to hang', file=sys.stderr, flush=True)\n"
    "time.sleep(60)\n"
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_a_slow_printer_outlives_the_stall_window():
    t0 = time.monotonic()
    proc = guard.run_guarded([PY, "-c", SLOW_PRINTER], stall=1.5)
    assert time.monotonic() - t0 > 1.5  # longer than the window: the output kept it alive
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(i) for i in range(8)] and proc.stderr == ""


def test_a_silent_sleeper_fails_with_the_reason_and_its_tree_is_killed(tmp_path):
    pids = tmp_path / "pids"
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failed:
        guard.run_guarded([PY, "-c", SLEEPER, str(pids)], stall=2)
    assert 2 <= time.monotonic() - t0 < 10
    message = str(failed.value)
    assert "no progress (no output, no CPU) for 2 s" in message
    assert "about to hang" in message  # the tail of its stderr
    assert _wait_gone([int(p) for p in pids.read_text().split()])  # the child and its grandchild


def test_a_silent_cpu_burner_outlives_the_stall_window():
    proc = guard.run_guarded([PY, "-c", BURN, "3.5"], stall=1.5)
    assert proc.returncode == 0 and proc.stdout == ""


def test_cpu_of_descendants_counts_also_after_they_exit():
    """The child sleeps while its grandchildren burn CPU one after the other (as a Ray driver waits on
    its workers): an exited grandchild's CPU stays counted, the later ones move the measure on."""
    script = (
        "import subprocess, sys\n"
        "for _ in range(3):\n"
        f"    subprocess.run([sys.executable, '-c', {BURN!r}, '1.2'], check=True)\n"
    )
    proc = guard.run_guarded([PY, "-c", script], stall=1.5)
    assert proc.returncode == 0, proc.stderr


def test_a_busy_loop_ends_at_the_cap():
    with pytest.raises(pytest.fail.Exception, match=r"still running after \d+ s, the cap \(2 s\)"):
        guard.run_guarded([PY, "-c", BURN, "30"], stall=1, cap=2)


def test_input_text_and_the_exit_code_come_back_as_subprocess_run():
    script = "import sys\ndata = sys.stdin.read()\nprint(data.upper())\nprint('err', file=sys.stderr)\nsys.exit(3)\n"
    proc = guard.run_guarded([PY, "-c", script], stall=5, input="abc")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "ABC\n", "err\n")


def test_communicate_guarded_gives_the_output_of_a_process_writing_to_files(tmp_path):
    proc = guard.popen_to_files([PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], tmp_path)
    assert guard.communicate_guarded(proc, stall=5) == ("out\n", "err\n")
    assert proc.returncode == 0


def test_communicate_guarded_fails_a_silent_sleeper(tmp_path):
    proc = guard.popen_to_files([PY, "-c", "import time; time.sleep(60)"], tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"no progress \(no output, no CPU\) for 2 s"):
        guard.communicate_guarded(proc, stall=2)
    assert _wait_gone([proc.pid])
    proc.wait()


def test_wait_for_waits_while_the_process_progresses(tmp_path):
    proc = guard.popen_to_files([PY, "-c", SLOW_PRINTER], tmp_path)
    out = guard.output_files(proc)[0]
    # true after ~2.8 s, longer than the 1.5 s window: the process printed all along
    assert guard.wait_for(lambda: out.read_text().count("\n") >= 7, stall=1.5, what="7 lines", proc=proc, poll=0.1)
    proc.wait()


def test_wait_for_fails_when_the_process_stalls_or_exits(tmp_path):
    sleeper = guard.popen_to_files([PY, "-c", "import time; time.sleep(60)"], tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"waiting for never: no progress"):
        guard.wait_for(lambda: False, stall=1.5, what="never", proc=sleeper, poll=0.1)
    sleeper.wait()
    quitter = guard.popen_to_files([PY, "-c", "import sys; sys.exit('bye')"], tmp_path)
    with pytest.raises(pytest.fail.Exception, match=r"process exited \(1\) before never:\nbye"):
        guard.wait_for(lambda: False, stall=30, what="never", proc=quitter, poll=0.1)


def test_wait_for_without_a_process_keeps_a_fixed_timeout():
    with pytest.raises(pytest.fail.Exception, match="timed out after 0s waiting for never"):
        guard.wait_for(lambda: False, timeout=0.3, what="never", poll=0.05)
    with pytest.raises(TypeError):
        guard.wait_for(lambda: True, stall=5, what="no process to watch")
