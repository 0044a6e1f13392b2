"""What a running search shows: the counts, time left, best metric and Pareto set of the records so
far, the one-line-per-trial form, and the redirect that keeps Ray's own output off the terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from econ_ray.search.progress import RAY_OUTPUT_FILE, progress_of, quiet_ray_output, summary_line, trial_line
from econ_ray.search.records import TrialRecord


def rec(tid, order, status="complete", metric=None, cost=None, **extra):
    m = {"dense_total_gflops": 1.0, **extra}
    if metric is not None:
        m.update(metric=metric, static_gflops=cost)
    return TrialRecord(tid, order, status, {"target_ratio": 0.5, "method": "targeted"}, metrics=m)


RECORDS = [
    rec("a", 0, metric=0.90, cost=0.50),
    rec("b", 1, metric=0.80, cost=0.30),
    rec("c", 2, metric=0.70, cost=0.60),  # dominated by a
    TrialRecord("d", 3, "failed", {"target_ratio": 0.2}, reason="training diverged at step 3"),
    TrialRecord("e", 4, "stopped", {"target_ratio": 0.9}, reason="stopped before its final evaluation"),
]


def test_progress_counts_the_front_and_the_time_left():
    p = progress_of(
        RECORDS,
        running=2,
        total=8,
        elapsed_s=100.0,
        done_this_session=5,
        maximize=True,
        cost="static_gflops",
        chance=0.5,
    )
    assert (p.complete, p.failed, p.stopped, p.running, p.done, p.total) == (3, 1, 1, 2, 5, 8)
    assert p.best_metric == 0.90 and p.pareto_size == 2
    # boxes to (0.5, 1.05): b (0.30, 0.80) and a (0.50, 0.90): 0.2 * 0.3 + 0.55 * 0.4
    assert p.hypervolume == pytest.approx(0.2 * 0.30 + 0.55 * 0.40)
    assert p.eta_s == pytest.approx(100.0 / 5 * 3)
    # an infeasible trial is not in the front; nothing finished yet: no estimate, no best
    infeasible = [*RECORDS[:1], rec("b", 1, metric=0.95, cost=0.1)]
    infeasible[1].feasible = False
    q = progress_of(
        infeasible,
        running=0,
        total=8,
        elapsed_s=5,
        done_this_session=0,
        maximize=True,
        cost="static_gflops",
        chance=0.5,
    )
    assert q.best_metric == 0.90 and q.pareto_size == 1 and q.eta_s is None
    empty = progress_of(
        [], running=1, total=4, elapsed_s=1, done_this_session=0, maximize=True, cost="static_gflops", chance=0.5
    )
    assert empty.best_metric is None and empty.hypervolume is None and empty.pareto_size == 0
    # a smaller-is-better metric (perplexity): the best is the smallest
    ppl = progress_of(
        RECORDS[:3],
        running=0,
        total=3,
        elapsed_s=1,
        done_this_session=3,
        maximize=False,
        cost="static_gflops",
        chance=9,
    )
    assert ppl.best_metric == 0.70


def test_each_finished_trial_is_one_line_with_its_outcome_and_the_search_so_far():
    p = progress_of(
        RECORDS, running=2, total=8, elapsed_s=125, done_this_session=5, maximize=True, cost="static_gflops", chance=0.5
    )
    line = trial_line(RECORDS[0], p, metric_name="accuracy", cost="static_gflops")
    assert "\n" not in line
    assert line.startswith("trial a [method=targeted, target_ratio=0.5] accuracy 0.9, static_gflops 0.5 | ")
    assert "5/8 done (3 complete, 1 failed, 1 stopped), 2 running" in line
    assert "2m05s elapsed, ~1m15s left" in line and "best accuracy 0.9" in line and "Pareto set 2" in line
    failed = trial_line(RECORDS[3], p, metric_name="accuracy", cost="static_gflops")
    assert "failed: training diverged at step 3" in failed
    assert summary_line(p, "accuracy") in failed


def test_ray_output_goes_to_the_run_folder_and_the_display_to_the_terminal(tmp_path):
    """Run in a child process whose stdout is a pipe (the 'terminal'): what it and its own children
    print to fd 1 and 2 inside the block lands in the file; the yielded stream reaches the pipe."""
    code = f"""
import os, subprocess, sys
from pathlib import Path
from econ_ray.search.progress import quiet_ray_output
print("before", flush=True)
with quiet_ray_output(Path({str(tmp_path)!r}), verbose=False) as user:
    print("python stdout inside", flush=True)
    os.write(2, b"raylet warning inside\\n")
    subprocess.run([sys.executable, "-c", "print('child process inside')"], check=True)
    user.write("progress line\\n")
print("after", flush=True)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["before", "progress", "line", "after"]
    assert out.stderr == ""
    log = (tmp_path / RAY_OUTPUT_FILE).read_text()
    for text in ("python stdout inside", "raylet warning inside", "child process inside"):
        assert text in log


def test_verbose_redirects_nothing(tmp_path, capsys):
    with quiet_ray_output(tmp_path, verbose=True) as user:
        assert user is sys.stdout
        print("shown")
    assert "shown" in capsys.readouterr().out and not (tmp_path / RAY_OUTPUT_FILE).exists()


def test_the_file_descriptors_come_back_when_the_block_raises(tmp_path):
    before = os.fstat(1).st_ino
    with pytest.raises(RuntimeError), quiet_ray_output(tmp_path, verbose=False) as user:
        assert isinstance(user, io.TextIOBase)
        raise RuntimeError("boom")
    assert os.fstat(1).st_ino == before
