"""A hang guard that waits on progress, not on wall time.

The integration tests run real searches on a machine they share with other jobs: a search that takes
10 minutes alone can take an hour there, so a fixed timeout fails a test that is only slow. The guard
here fails a command only when it has stopped getting anywhere: for ``stall`` seconds its output did
not grow and its process tree (the process and every descendant: a Ray driver's GCS, raylet and
workers) used less than ``CPU_STEP`` seconds of CPU. A generous absolute cap (``CAP_FACTOR`` x the
stall window) still ends a hang that busy-loops. On failure it kills the command's process tree and
fails the test with the tail of the command's stderr.

A live Ray cluster's background threads use a little CPU while idle, which counts as progress: a hang
inside one is ended by the cap rather than the stall window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_STEP = 0.5  # CPU seconds (user + system) of a process tree that count as progress
CAP_FACTOR = 6  # the absolute cap, in stall windows
TAIL = 3000  # characters of stderr in a failure message

# other process trees whose CPU also counts as progress (a cluster the command submits its work to):
# PIDs, or a function giving them at each look (processes that come and go)
Pids = Iterable[int] | Callable[[], Iterable[int]]


def descendants(pid: int) -> list[int]:
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


def own_children() -> list[int]:
    """The processes this (pytest) process started: with ``also``, a Ray cluster made in the test."""
    try:
        return [c.pid for c in psutil.Process().children()]
    except psutil.NoSuchProcess:
        return []


class TreeCpu:
    """CPU seconds (user + system) used so far by process trees, never going backwards: the last value
    seen of every process ever seen is summed (by PID and start time), so a descendant that exits keeps
    its share, and each process's reaped children (``children_user/system``) count too, so even a
    child that lived between two looks is seen (at worst counted twice: a little early progress)."""

    def __init__(self, pid: int | None, also: Pids = ()) -> None:
        self.pid = pid
        self.also = also
        self.seen: dict[tuple[int, float], float] = {}
        self.own: set[tuple[int, float]] = set()  # processes of the tree of ``pid`` (the command's)

    def _roots(self) -> list[int]:
        extra = self.also() if callable(self.also) else self.also
        return ([] if self.pid is None else [self.pid]) + list(extra)

    def total(self) -> float:
        procs: dict[int, psutil.Process] = {}
        children: dict[int, list[int]] = {}
        for p in psutil.process_iter(["ppid"]):  # one look at the process table for every tree
            procs[p.pid] = p
            children.setdefault(p.info["ppid"], []).append(p.pid)
        for i, root in enumerate(self._roots()):
            stack, done = [root], set()
            while stack:
                pid = stack.pop()
                if pid in done or pid not in procs:
                    continue
                done.add(pid)
                stack.extend(children.get(pid, ()))
                try:
                    with procs[pid].oneshot():
                        key = (pid, procs[pid].create_time())
                        t = procs[pid].cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                used = t.user + t.system + t.children_user + t.children_system
                self.seen[key] = max(self.seen.get(key, 0.0), used)
                if i == 0 and self.pid is not None:
                    self.own.add(key)
        return sum(self.seen.values())

    def kill(self) -> None:
        """SIGKILL the tree of ``pid`` and every process seen in it that still runs (a descendant whose
        parent died is reparented: no longer found under ``pid``); never the ``also`` trees."""
        if self.pid is None:
            return
        kill_tree(self.pid)
        for pid, started in self.own:
            try:
                p = psutil.Process(pid)
                if p.create_time() == started:
                    p.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path | None, n: int = TAIL) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, _size(path) - 4 * n))
            return f.read().decode("utf-8", "replace")[-n:]
    except OSError:
        return ""


class StallGuard:
    """Fails the test (after killing the command's process tree) when the command has made no progress
    for ``stall`` seconds, or runs past ``cap`` seconds (default ``CAP_FACTOR`` x ``stall``) however it
    progresses. Progress: its output files (or the ``output`` count given to ``check``) grew, or its
    process tree and the ``also`` trees used ``cpu_step`` more CPU seconds since the last progress.

    Call ``check()`` often; it looks at the processes at most every ``every`` seconds."""

    def __init__(
        self,
        pid: int | None,
        *,
        stall: float,
        what: str,
        files: Sequence[Path] = (),
        also: Pids = (),
        cap: float | None = None,
        cpu_step: float = CPU_STEP,
        tail: Callable[[], str] | None = None,
    ) -> None:
        self.stall, self.what, self.files = stall, what, [Path(f) for f in files]
        self.cap = CAP_FACTOR * stall if cap is None else cap
        self.cpu_step = cpu_step
        self.every = min(1.0, stall / 4)
        self.tail = tail if tail is not None else (lambda: _tail(self.files[-1] if self.files else None))
        self.cpu = TreeCpu(pid, also)
        self.out_mark, self.cpu_mark = self._output(0), self.cpu.total()
        self.start = self.last_progress = self.last_look = time.monotonic()

    def _output(self, extra: int) -> int:
        return sum(_size(f) for f in self.files) + extra

    def check(self, *, output: int = 0) -> None:
        now = time.monotonic()
        if now - self.last_look < self.every:
            return
        self.last_look = now
        out, cpu = self._output(output), self.cpu.total()
        if out > self.out_mark or cpu >= self.cpu_mark + self.cpu_step:
            self.out_mark, self.cpu_mark, self.last_progress = out, cpu, now
        idle, ran = now - self.last_progress, now - self.start
        if idle >= self.stall:
            why = f"no progress (no output, no CPU) for {idle:.0f} s"
        elif ran >= self.cap:
            why = f"still running after {ran:.0f} s, the cap ({self.cap:.0f} s) of a {self.stall:.0f} s stall window"
        else:
            return
        self.cpu.kill()
        pytest.fail(f"{self.what}: {why}; killed its process tree. Its stderr ends:\n{self.tail()}")


def _wait(proc: subprocess.Popen, guard: StallGuard) -> int:
    while True:
        try:
            return proc.wait(timeout=guard.every)
        except subprocess.TimeoutExpired:
            guard.check()


def _describe(args) -> str:
    text = " ".join(str(a) for a in args) if isinstance(args, (list, tuple)) else str(args)
    return text if len(text) <= 200 else text[:197] + "..."


def _read(path: Path) -> str:
    # as subprocess's text=True: the locale's encoding, universal newlines
    return path.read_text(errors="replace")


def run_guarded(
    args: Sequence[str],
    *,
    env: dict | None = None,
    cwd: Path | str | None = ROOT,
    stall: float,
    input: str | None = None,
    also: Pids = (),
    cap: float | None = None,
) -> subprocess.CompletedProcess:
    """``subprocess.run(args, capture_output=True, text=True, ...)`` with the progress guard instead of
    a timeout. stdout and stderr go to temporary files (nothing blocks on a full pipe) and come back as
    text; a command that leaves a descendant running is not waited for (that one is not killed)."""
    with tempfile.TemporaryDirectory(prefix="guarded-") as tmp:
        out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr")
        stdin = None
        if input is not None:
            Path(tmp, "stdin").write_text(input)
            stdin = open(Path(tmp, "stdin"))  # noqa: SIM115 - closed below, after the process ends
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(list(args), env=env, cwd=cwd, stdin=stdin, stdout=out, stderr=err)
            guard = StallGuard(
                proc.pid, stall=stall, what=_describe(args), files=[out_path, err_path], also=also, cap=cap
            )
            try:
                _wait(proc, guard)
            except BaseException:  # the guard's failure, Ctrl-C: as subprocess.run, leave nothing running
                guard.cpu.kill()
                proc.wait()
                raise
        finally:
            if stdin is not None:
                stdin.close()
        return subprocess.CompletedProcess(proc.args, proc.returncode, _read(out_path), _read(err_path))


def popen_to_files(args: Sequence[str], folder: Path, **kw) -> subprocess.Popen:
    """``subprocess.Popen`` with stdout and stderr written to new files in ``folder`` (never a pipe
    that nobody reads while the test waits); ``communicate_guarded`` and ``wait_for`` read them."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="proc-", suffix=".out", dir=folder)
    os.close(fd)
    out_path = Path(name)
    err_path = out_path.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(list(args), stdout=out, stderr=err, **kw)
    proc.output_files = (out_path, err_path)  # type: ignore[attr-defined]
    return proc


def output_files(proc: subprocess.Popen) -> tuple[Path, Path] | None:
    return getattr(proc, "output_files", None)


def read_output(proc: subprocess.Popen) -> tuple[str, str]:
    """What an ended process wrote: its files (``popen_to_files``), else its pipes, else nothing."""
    files = output_files(proc)
    if files is not None:
        return _read(files[0]), _read(files[1])
    if proc.stdout is not None or proc.stderr is not None:
        out, err = proc.communicate()
        if isinstance(out, bytes) or isinstance(err, bytes):
            out, err = (x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in (out, err))
        return out or "", err or ""
    return "", ""


def communicate_guarded(
    proc: subprocess.Popen, *, stall: float, also: Pids = (), cap: float | None = None
) -> tuple[str, str]:
    """``proc.communicate(timeout=...)`` with the progress guard instead of the timeout: waits while the
    process (started by ``popen_to_files``) progresses, then returns its (stdout, stderr) as text."""
    files = output_files(proc)
    if files is None:
        raise TypeError("communicate_guarded reads the output files of a process started by popen_to_files")
    guard = StallGuard(proc.pid, stall=stall, what=_describe(proc.args), files=list(files), also=also, cap=cap)
    _wait(proc, guard)
    return read_output(proc)


def wait_for(
    predicate,
    *,
    what: str,
    proc: subprocess.Popen | None = None,
    stall: float | None = None,
    timeout: float | None = None,
    also: Pids = (),
    poll: float = 0.5,
):
    """Poll ``predicate`` until it returns something truthy, and return that.

    With ``proc``: fail if it exits first, or if it makes no progress (no output, no CPU in its process
    tree or the ``also`` trees) for ``stall`` seconds (then its tree is killed), or at the cap. Without
    ``proc`` (nothing to watch): fail after a fixed ``timeout``."""
    guard = None
    if proc is not None:
        if stall is None or timeout is not None:
            raise TypeError("wait_for(proc=...) takes stall=, the seconds without progress that fail")
        files = output_files(proc)
        guard = StallGuard(proc.pid, stall=stall, what=f"waiting for {what}", files=list(files or ()), also=also)
    elif timeout is None or stall is not None:
        raise TypeError("wait_for without proc takes timeout=, a fixed wait")
    end = time.monotonic() + (timeout or 0.0)
    while True:
        value = predicate()
        if value:
            return value
        if guard is not None:
            if proc.poll() is not None:
                _, err = read_output(proc)
                pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{err[-TAIL:]}")
            guard.check()
        elif time.monotonic() >= end:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
