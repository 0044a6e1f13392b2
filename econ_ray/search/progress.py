"""What a running search shows its user: a live panel on a terminal, one line per finished trial
elsewhere (logs, ``ray job logs``), and Ray's own output kept out of the way.

:func:`progress_of` and :func:`trial_line` are pure (records in, numbers and text out); the Tune
callback :class:`SearchProgress` (it runs in the driver, after the tracking callback, so the records
it reads include the trial that just ended) draws them. :func:`quiet_ray_output` sends what Ray,
Tune and their worker processes print (start-up banners, raylet warnings) to a file in the run
folder while the search runs, and hands back a stream on the user's own terminal for the display.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ray.tune import Callback

from econ_ray.search.pareto import hypervolume, pareto_front, reference_point
from econ_ray.search.records import TrialRecord, dense_cost, finite, points_from

RAY_OUTPUT_FILE = "ray_output.log"


@dataclass(frozen=True)
class Progress:
    """Where a search stands: counts out of ``total`` (trials of earlier sessions of a resumed search
    included), time, the best metric and the Pareto set so far."""

    total: int
    complete: int
    failed: int
    stopped: int
    running: int
    elapsed_s: float
    eta_s: float | None  # None until a trial of this session has finished
    best_metric: float | None
    pareto_size: int
    hypervolume: float | None

    @property
    def done(self) -> int:
        return self.complete + self.failed + self.stopped


def progress_of(
    records: list[TrialRecord],
    *,
    running: int,
    total: int,
    elapsed_s: float,
    done_this_session: int,
    maximize: bool,
    cost: str,
    chance: float,
) -> Progress:
    """Counts, best feasible metric, Pareto size and hypervolume (the reference point of the final
    summary: chance and 1.05 x the dense model's cost) of ``records``; the time left is the mean time
    per trial finished in this session times the trials left (``elapsed_s / done_this_session`` already
    reflects how many run at once)."""
    by = {s: sum(1 for r in records if r.status == s) for s in ("complete", "failed", "stopped")}
    done = sum(by.values())
    points = points_from(records, cost)
    front = pareto_front(points, maximize_metric=maximize)
    best = None
    if front:
        best = max(p.metric for p in front) if maximize else min(p.metric for p in front)
    dense = dense_cost(records, cost)
    hv = None
    if dense and dense > 0 and math.isfinite(chance):
        ref = reference_point(dense_gflops=dense, chance_metric=chance)
        hv = hypervolume(points, ref_metric=ref[0], ref_gflops=ref[1], maximize_metric=maximize)
    eta = elapsed_s / done_this_session * max(total - done, 0) if done_this_session > 0 else None
    return Progress(
        total=total,
        complete=by["complete"],
        failed=by["failed"],
        stopped=by["stopped"],
        running=running,
        elapsed_s=elapsed_s,
        eta_s=eta,
        best_metric=best,
        pareto_size=len(front),
        hypervolume=hv,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def summary_line(p: Progress, metric_name: str) -> str:
    """One line: ``3/8 done (2 complete, 1 failed, 0 stopped), 2 running | 4m10s, ~6m left | best ...``."""
    best = f"best {metric_name} {p.best_metric:.4g}" if p.best_metric is not None else f"best {metric_name} -"
    hv = f"{p.hypervolume:.4g}" if p.hypervolume is not None else "-"
    return (
        f"{p.done}/{p.total} done ({p.complete} complete, {p.failed} failed, {p.stopped} stopped), "
        f"{p.running} running | {_duration(p.elapsed_s)} elapsed, ~{_duration(p.eta_s)} left | "
        f"{best} | Pareto set {p.pareto_size}, hypervolume {hv}"
    )


def trial_line(rec: TrialRecord, p: Progress, *, metric_name: str, cost: str) -> str:
    """One line for a trial that just ended: its outcome, its knobs, then where the search stands."""
    knobs = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(rec.knobs.items()))
    m = rec.metrics
    if rec.status == "complete":
        value, c = m.get("metric"), m.get(cost)
        what = (
            f"{metric_name} {value:.4g}, {cost} {c:.4g}"
            if finite(value) and finite(c)
            else f"{metric_name} {value}, {cost} {c}"
        )
        if rec.feasible is False or m.get("infeasible_reason"):
            what += " (infeasible)"
    else:
        what = f"{rec.status}: {rec.reason or 'no reason given'}"
    return f"trial {rec.trial_id} [{knobs}] {what} | {summary_line(p, metric_name)}"


class SearchProgress(Callback):
    """The Tune callback that shows the search: a ``rich`` live panel when ``stream`` is a terminal,
    else one line per finished trial. ``records`` returns the records of every trial so far."""

    def __init__(
        self,
        records: Callable[[], list[TrialRecord]],
        *,
        total: int,
        metric_name: str,
        maximize: bool,
        cost: str,
        chance: Callable[[list[TrialRecord]], float],
        stream: IO[str],
        live: bool | None = None,
    ) -> None:
        self._records, self.total, self.metric_name = records, total, metric_name
        self.maximize, self.cost, self._chance = maximize, cost, chance
        self.stream = stream
        self.live_mode = stream.isatty() if live is None else live
        self._running: set[str] = set()
        self._t0 = time.time()
        self._n_before = len(records())
        self._live: Any = None
        self._seen: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with its state
        return {k: v for k, v in self.__dict__.items() if k not in ("_records", "_chance", "stream", "_live")}

    # ---- what is shown ---------------------------------------------------------------------------

    def progress(self) -> Progress:
        recs = self._records()
        return progress_of(
            recs,
            running=len(self._running),
            total=self.total,
            elapsed_s=time.time() - self._t0,
            done_this_session=max(len(recs) - self._n_before - len(self._running), 0),
            maximize=self.maximize,
            cost=self.cost,
            chance=self._chance(recs),
        )

    def _panel(self, p: Progress) -> Any:
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        t.add_row(ProgressBar(total=max(p.total, 1), completed=p.done, width=40), f"{p.done}/{p.total} trials")
        t.add_row("finished", f"{p.complete} complete, {p.failed} failed, {p.stopped} stopped")
        t.add_row("running", str(p.running))
        t.add_row("time", f"{_duration(p.elapsed_s)} elapsed, ~{_duration(p.eta_s)} left")
        best = f"{p.best_metric:.4g}" if p.best_metric is not None else "-"
        t.add_row(f"best {self.metric_name}", best)
        hv = f"{p.hypervolume:.4g}" if p.hypervolume is not None else "-"
        t.add_row("Pareto set", f"{p.pareto_size} models, hypervolume {hv}")
        return Panel(t, title="econ-ray search", expand=False)

    def start(self) -> None:
        """Open the live panel (a terminal) before the first trial starts."""
        if self.live_mode and self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, force_terminal=True)
            # redirect_*=False: what Python prints meanwhile (Tune) stays in the run folder's file
            self._live = Live(
                self._panel(self.progress()),
                console=console,
                refresh_per_second=2,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.update(self._panel(self.progress()))
            self._live.stop()
            self._live = None

    def _update(self) -> None:
        if self._live is not None:
            self._live.update(self._panel(self.progress()))

    def _ended(self, trial_id: str) -> None:
        self._running.discard(trial_id)
        if trial_id in self._seen:
            return
        self._seen.add(trial_id)
        if self._live is not None:
            self._update()
            return
        rec = next((r for r in self._records() if r.trial_id == trial_id), None)
        if rec is not None:
            self.stream.write(trial_line(rec, self.progress(), metric_name=self.metric_name, cost=self.cost) + "\n")
            self.stream.flush()

    # ---- Tune's events ---------------------------------------------------------------------------

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._running.add(trial.trial_id)
        self._update()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._update()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial.trial_id)


@contextlib.contextmanager
def quiet_ray_output(run_dir: Path, *, verbose: bool) -> Iterator[IO[str]]:
    """While the block runs, file descriptors 1 and 2 (this process's and every process it starts:
    Ray's GCS, raylet, workers) write to ``run_dir/ray_output.log``; the stream yielded writes to the
    terminal the user had. With ``verbose`` nothing is redirected and the stream is ``sys.stdout``.
    Python's own ``sys.stdout``/``sys.stderr`` objects are flushed first and keep working."""
    if verbose:
        yield sys.stdout
        return
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no file descriptors (an embedded interpreter): nothing to redirect
        yield sys.stdout
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    log = os.open(run_dir / RAY_OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    user = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield user
    finally:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (log, *saved):
            os.close(fd)
        user.close()
