"""The shared dense start (search.dense_start: shared): the dense model trained once and saved, the
trials' config pointing at it, its resources, and a resumed search finding it."""

import json
from types import SimpleNamespace

import pytest

from econ_ray.config import load_config, parse_config
from econ_ray.search.dense_start import (
    DENSE_FIELDS,
    _train_and_save,
    dense_folder,
    dense_resources,
    read_summary,
    shared_dense_start,
    trials_from,
)
from econ_ray.search.records import TrialRecord, dense_of
from econ_ray.search.space import trial_config

SMALL = {
    "model": {"name": "tiny-bert", "tiny": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64}},
    "data": {"source": "builtin:similarity", "max_length": 20, "builtin": {"n_train": 200, "n_validation": 60}},
    "attention": {"mode": "dense"},
    "objective": {"kind": "targeted", "target_ratio": 0.5, "dense_steps": 20, "finetune_fraction": 0.5},
    "training": {"max_steps": 6, "eval_every": 3, "batch_size": 16, "lr": 1e-3},
    "search": {"dense_start": "shared", "space": {"target_ratio": {"low": 0.2, "high": 0.8}}},
    "distributed": {"workers": 2, "cpus_per_worker": 0.5, "deepspeed": False},
}


def test_trials_load_the_saved_dense_model_and_measure_what_it_measured(tmp_path):
    from econ_ray.training import train_run

    cfg = parse_config(SMALL, "small.yaml")
    folder = dense_folder(tmp_path)
    dense = _train_and_save(trial_config(cfg, {}).model_dump(), str(folder), 1, "cpu")
    assert set(dense) == set(DENSE_FIELDS) and dense["dense_steps"] == 20 and dense["train_s"] > 0
    assert read_summary(folder) == dense
    assert not (tmp_path / "dense.partial").exists()

    trials = trials_from(cfg, folder)
    run = trial_config(trials, {"target_ratio": 0.4})
    assert run.model.name == str(folder / "model")
    assert run.objective.dense_reference == "model" and run.objective.dense_steps == 0
    assert run.objective.target_ratio == 0.4
    assert trials.search.dense_start == "per_trial"  # the trials' file: nothing left to share
    assert cfg.search.dense_start == "shared"  # the file itself is unchanged
    out = train_run(run).summary
    # the trial's dense reference is the saved model, measured as it was measured before saving
    assert out["dense_metric"] == pytest.approx(dense["metric"], abs=1e-5)
    assert out["ce_dense"] == pytest.approx(dense["ce_dense"], abs=1e-5)
    assert out["dense_steps"] == 0 and out["dense_total_gflops"] == pytest.approx(dense["dense_total_gflops"])


def test_a_resumed_search_finds_its_dense_model_and_trains_nothing(tmp_path):
    cfg = parse_config(SMALL, "small.yaml")
    folder = dense_folder(tmp_path)
    folder.mkdir()
    summary = {"metric_name": "pearson", "metric": 0.9, "ce_dense": 0.2, "dense_total_gflops": 0.01}
    (folder / "econ.json").write_text(json.dumps({"summary": summary}))
    trials, dense, trained = shared_dense_start(cfg, tmp_path)  # no Ray: nothing to train
    assert not trained and dense["metric"] == 0.9 and dense["train_s"] is None
    assert trials.model.name == str(folder / "model")


def test_a_half_saved_dense_model_is_not_taken_as_finished(tmp_path):
    (tmp_path / "dense").mkdir()  # a kill before econ.json was written
    assert read_summary(dense_folder(tmp_path)) is None


def test_the_dense_start_reserves_the_cpus_of_the_trials_at_once_and_one_gpu():
    cfg = parse_config({**SMALL, "search": {**SMALL["search"], "concurrency": 3}}, "small.yaml")
    assert dense_resources(cfg) == {"num_cpus": 3.0}
    gpu = parse_config({**SMALL, "distributed": {"workers": 4, "cpus_per_worker": 2, "gpus_per_worker": 1}}, "gpu.yaml")
    assert dense_resources(gpu) == {"num_cpus": 8.0 * gpu.search.concurrency, "num_gpus": 1.0}
    half = parse_config({**SMALL, "distributed": {"workers": 1, "gpus_per_worker": 0.25}}, "half.yaml")
    assert dense_resources(half)["num_gpus"] == 0.25


def test_the_shipped_quickstart_shares_its_dense_start(tmp_path):
    cfg = load_config("search_spaces/quickstart.yaml")
    assert cfg.search.dense_start == "shared"
    assert trials_from(cfg, dense_folder(tmp_path)).model.name == str(tmp_path / "dense" / "model")


def _rec(tid, status, **metrics):
    return TrialRecord(tid, 0, status, {}, metrics=metrics)


def test_the_dense_model_of_trials_is_the_median_of_their_dense_metrics():
    recs = [
        _rec("a", "complete", dense_metric=0.9, dense_total_gflops=0.02),
        _rec("b", "complete", dense_metric=0.8, dense_total_gflops=0.02),
        _rec("c", "complete", dense_metric=0.7, dense_total_gflops=0.02),
        _rec("d", "failed", dense_metric=0.1, dense_total_gflops=0.02),
    ]
    assert dense_of(recs, "pearson") == {"metric_name": "pearson", "metric": 0.8, "dense_total_gflops": 0.02}
    assert dense_of(recs[3:], "pearson") is None
    assert dense_of([_rec("e", "complete", dense_metric=0.9)], "pearson") is None  # no cost: no point


def test_a_failed_trials_reason_is_the_validation_error_not_pydantics_link(tmp_path):
    from econ_ray.search.tracking_callback import _error_line

    error_file = tmp_path / "error.txt"
    error_file.write_text(
        "Traceback (most recent call last):\n"
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for SearchSpaceFile\n"
        "  Value error, search.dense_start: 'shared' trains objective.dense_steps once [type=value_error]\n"
        "    For further information visit https://errors.pydantic.dev/2.14/v/value_error\n"
    )
    reason = _error_line(SimpleNamespace(error_file=str(error_file)))
    assert reason.startswith("Value error, search.dense_start")


def test_the_dense_line_names_what_the_summary_has():
    from econ_ray.search.driver import dense_line

    full = {"metric_name": "pearson", "metric": 0.93274, "dense_total_gflops": 0.019497, "dense_steps": 1200}
    assert dense_line({**full, "train_s": 37.2}) == "pearson 0.9327, at 0.0195 GFLOPs (1200 steps in 37 s)"
    assert dense_line(full) == "pearson 0.9327, at 0.0195 GFLOPs"  # the trials' own dense model: no training time
    assert dense_line({"metric_name": "pearson", "metric": 0.5, "dense_steps": 9, "train_s": 2.0}) == (
        "pearson 0.5 (9 steps in 2 s)"
    )
