"""A run whose loss becomes NaN or infinite stops at once with DivergenceError; in a search the trial
is recorded failed with the reason (MLflow run, trials.json / trials.csv) and is not a Pareto point."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest

from econ_ray.cli.main import main
from econ_ray.config import RunConfig
from econ_ray.search.pareto import pareto_front
from econ_ray.search.records import TrialRecord, points_from, write_trials
from econ_ray.training import DivergenceError, RunHooks, train_run

TINY = {
    "model": {"name": "tiny-bert", "tiny": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}},
    "data": {
        "source": "builtin:majority",
        "max_length": 16,
        "builtin": {"n_train": 64, "n_validation": 16, "min_len": 4, "max_len": 12},
    },
    "attention": {"mode": "gates"},
    "objective": {"lam": 0.0, "dense_steps": 0},
    "training": {"max_steps": 10, "batch_size": 8, "eval_every": 10, "progress": False, "device": "cpu"},
}


def _cfg(**sections) -> RunConfig:
    data = json.loads(json.dumps(TINY))
    for name, values in sections.items():
        data[name].update(values)
    return RunConfig.model_validate(data)


def test_huge_learning_rate_diverges_within_a_few_steps():
    steps = []
    with pytest.raises(DivergenceError, match=r"training diverged: loss is (nan|inf|-inf) at step (\d+)") as err:
        train_run(_cfg(training={"lr": 1e6}), hooks=RunHooks(on_step=lambda rec: steps.append(rec["step"])))
    step = int(str(err.value).rsplit(" ", 1)[1])
    assert step <= 10 and steps == list(range(1, step))  # stopped at the first non-finite loss


def test_huge_price_diverges_at_the_first_step():
    with pytest.raises(DivergenceError, match="training diverged: loss is (nan|inf) at step 1$"):
        train_run(_cfg(objective={"lam": 1e39, "alpha": 1.0, "dense_steps": 0}))


def test_dense_phase_divergence_is_named():
    with pytest.raises(DivergenceError, match="training diverged in the dense phase"):
        train_run(_cfg(training={"lr": 1e6}, objective={"dense_steps": 10}))


def test_a_sane_run_does_not_diverge():
    assert train_run(_cfg()).summary["steps"] == 10


def test_cli_train_exits_1_with_one_line(tmp_path, capsys):
    import yaml

    f = tmp_path / "div.yaml"
    f.write_text(yaml.safe_dump({**TINY, "training": {**TINY["training"], "lr": 1e6}}))
    assert main(["train", str(f)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("econ-ray: training diverged") and "training.lr" in err[0]


def test_failed_trial_reason_and_pareto(tmp_path):
    """The Tune callback's reason for a Ray-wrapped DivergenceError, and the run folder's records."""
    from econ_ray.search.tracking_callback import _error_line

    error_file = tmp_path / "error.txt"
    error_file.write_text(
        "Failure # 1 (occurred at 2026-01-01_00-00-00)\n"
        "ray::_Inner.train() (pid=1, ip=127.0.0.1)\n"
        "ray.train.v2.api.exceptions.WorkerGroupError: Training failed due to worker errors:\n"
        "[Rank 0 Error Snippet]:\nTraceback (most recent call last):\n"
        '  File "econ_ray/training/loop.py", line 280, in train_run\n'
        "econ_ray.training.loop.DivergenceError: training diverged: loss is inf at step 1\n"
        "[Rank 1 Error Snippet]:\nRuntimeError: Connection closed by peer\n"
    )
    reason = _error_line(SimpleNamespace(error_file=str(error_file)))
    assert reason == "training diverged: loss is inf at step 1"
    ok = TrialRecord("a", 0, "complete", {"lam": 0.1}, metrics={"metric": 0.8, "effective_gflops": 1.0})
    bad = TrialRecord("b", 1, "failed", {"lam": 1e39}, reason=reason, feasible=False)
    write_trials(tmp_path, [ok, bad])
    rows = {r["trial_id"]: r for r in json.loads((tmp_path / "trials.json").read_text())}
    assert rows["b"]["status"] == "failed" and rows["b"]["reason"] == reason
    with open(tmp_path / "trials.csv") as f:
        by_id = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert by_id["b"]["status"] == "failed" and by_id["b"]["reason"] == reason
    front = pareto_front(points_from([ok, bad]), maximize_metric=True)
    assert [p.trial_id for p in front] == ["a"]


def test_trials_csv_has_one_column_per_name(tmp_path):
    """Tune's results carry trial_id and the run's feasible: they must not shadow the record's own."""
    ok = TrialRecord("a", 0, "complete", {"lam": 0.1}, metrics={"metric": 0.8, "trial_id": "a", "feasible": None})
    bad = TrialRecord(
        "b", 1, "failed", {"lam": 1e39}, reason="training diverged: loss is inf at step 1", feasible=False
    )
    write_trials(tmp_path, [ok, bad])
    with open(tmp_path / "trials.csv") as f:
        header = next(csv.reader(f))
    assert len(header) == len(set(header)) and "result_trial_id" in header and "result_feasible" in header
    with open(tmp_path / "trials.csv") as f:
        by_id = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert set(by_id) == {"a", "b"} and by_id["b"]["status"] == "failed"
