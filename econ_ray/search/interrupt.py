"""A search stopped by SIGINT (Ctrl-C) or SIGTERM (``ray job stop``, a scheduler, ``kill``) ends cleanly:
the signal becomes ``KeyboardInterrupt`` in the driver's main thread (then :class:`SearchInterrupted`), the driver closes its MLflow
runs as KILLED, stops Ray, and the CLI prints the ``--resume`` command. Everything a resume needs is
already on disk (the run folder's records, the Optuna study, ``search_state.json``): a trial cut off
mid-training is re-run with the same knobs by the resume (``econ_ray.search.resume``).

Ray Tune's own SIGINT handler (which ends ``tuner.fit`` as if the search had finished) is switched off
while the guard is active. A second signal gets the default behaviour (an immediate stop).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)


class SearchInterrupted(BaseException):
    """The search was stopped by a signal; ``run_dir`` is the folder ``--resume`` goes on from. A
    BaseException, as KeyboardInterrupt is: no ``except Exception`` on the way (Tune's, ours) swallows it."""

    def __init__(self, signum: int, run_dir: str | None = None) -> None:
        self.signum = signum
        self.run_dir = run_dir
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class Guard:
    """What :func:`signals_interrupt` yields: ``rearm()`` and, once a signal came, its number."""

    def __init__(self, arm: Callable[[], None]) -> None:
        self.rearm = arm
        self.signum: int | None = None

    def interrupted(self) -> SearchInterrupted:
        """The :class:`SearchInterrupted` of the signal that came (SIGINT when none was seen: a
        KeyboardInterrupt raised by other means)."""
        return SearchInterrupted(self.signum or signal.SIGINT)


@contextmanager
def signals_interrupt() -> Iterator[Guard]:
    """While active (main thread only), SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread
    (the one exception Ray's blocking calls pass on cleanly) and the guard keeps which signal it was;
    the caller turns it into :class:`SearchInterrupted` (``guard.interrupted()``). Call ``guard.rearm()``
    after ``ray.init``, which installs its own SIGTERM handler (``sys.exit``) and whose core worker
    installs a C++ one that aborts the process."""
    if threading.current_thread() is not threading.main_thread():
        yield Guard(lambda: None)
        return
    old: dict[int, Any] = {s: signal.getsignal(s) for s in SIGNALS}
    old_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")

    def handler(signum: int, frame: Any) -> None:
        for s, h in old.items():  # a second signal: what it did before (stop now)
            signal.signal(s, h)
        guard.signum = signum
        raise KeyboardInterrupt

    def arm() -> None:
        for s in SIGNALS:
            signal.signal(s, handler)

    guard = Guard(arm)
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    arm()
    try:
        yield guard
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if old_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = old_env
