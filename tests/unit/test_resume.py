"""Resuming a search: recorded trials, remaining count, the Optuna study after a kill (real SQLite storage)."""

import optuna
import pytest
from optuna.trial import TrialState

from econ_ray.config import parse_config
from econ_ray.search.optuna_searcher import ConstrainedOptunaSearch
from econ_ray.search.records import TrialRecord, load_records, write_record
from econ_ray.search.resume import (
    INTERRUPTED_ATTR,
    ResumeError,
    check_same_config,
    read_state,
    reconcile_study,
    remaining_trials,
    write_state,
)


def _cfg():
    return parse_config(
        {
            "attention": {"mode": "gates"},
            "search": {"space": {"lam": {"low": 0.01, "high": 10.0, "log": True}, "alpha": {"low": 0.0, "high": 1.0}}},
        },
        "s.yaml",
    )


def _searcher(tmp_path, seed=0):
    return ConstrainedOptunaSearch(
        _cfg().search.space,
        sampler="tpe",
        seed=seed,
        n_trials=6,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="t",
    )


def test_records_round_trip_in_finishing_order(tmp_path):
    write_record(tmp_path, TrialRecord("b", 1, "failed", {"lam": 2.0}, reason="boom"))
    write_record(tmp_path, TrialRecord("a", 0, "complete", {"lam": 1.0}, metrics={"metric": 0.5}, checkpoint="/c"))
    recs = load_records(tmp_path)
    assert [(r.trial_id, r.status) for r in recs] == [("a", "complete"), ("b", "failed")]
    assert recs[0].metrics == {"metric": 0.5} and recs[0].checkpoint == "/c" and recs[1].reason == "boom"
    assert load_records(tmp_path / "none") == []


def test_remaining_trials_counts_every_recorded_trial():
    recs = [TrialRecord(str(i), i, s, {}) for i, s in enumerate(["complete", "failed", "stopped"])]
    assert remaining_trials(5, recs) == 2
    assert remaining_trials(3, recs) == 0
    assert remaining_trials(2, recs) == 0  # never negative


def test_state_file(tmp_path):
    with pytest.raises(ResumeError, match="not a search run folder"):
        read_state(tmp_path)
    write_state(tmp_path, {"n_trials": 3, "parent_run_id": "p"})
    assert read_state(tmp_path) == {"n_trials": 3, "parent_run_id": "p"}


def test_interrupted_trials_fail_and_their_knobs_come_back(tmp_path):
    s = _searcher(tmp_path)
    knobs = {tid: s.suggest(tid)["knobs"] for tid in ("done", "cut1", "cut2")}
    s.on_trial_complete("done", {"final": 1, "metric": 0.5, "effective_gflops": 1.0})
    records = [TrialRecord("done", 0, "complete", knobs["done"])]
    del s  # the driver is killed: cut1 and cut2 stay RUNNING in the study

    resumed = _searcher(tmp_path)
    rerun = reconcile_study(resumed.study, records)
    assert sorted(r["tune_trial_id"] for r in rerun) == ["cut1", "cut2"]
    by_tid = {t.user_attrs.get("tune_trial_id"): t for t in resumed.study.trials}
    assert by_tid["done"].state == TrialState.COMPLETE
    for tid in ("cut1", "cut2"):
        assert by_tid[tid].state == TrialState.FAIL and by_tid[tid].user_attrs[INTERRUPTED_ATTR]
    # the next two suggestions are the cut-off trials' knobs, in order; then the sampler goes on
    assert resumed.suggest("new1")["knobs"] == knobs["cut1"]
    assert resumed.suggest("new2")["knobs"] == knobs["cut2"]
    fresh = resumed.suggest("new3")["knobs"]
    assert fresh not in knobs.values()
    # a second resume closes what is cut off now and does not re-enqueue what was handled before
    again = reconcile_study(optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'optuna.db'}"), records)
    assert {r["tune_trial_id"] for r in again} == {"new1", "new2", "new3"}  # these were cut off now


def test_finished_trial_without_record_is_rerun(tmp_path):
    s = _searcher(tmp_path)
    k = s.suggest("lost")["knobs"]
    s.on_trial_complete("lost", {"final": 1, "metric": 0.5, "effective_gflops": 1.0})  # told, record never written
    rerun = reconcile_study(_searcher(tmp_path).study, [])
    assert [r["params"] for r in rerun] == [k]
    assert reconcile_study(_searcher(tmp_path).study, []) == []


def test_trial_cut_off_before_its_tune_id_was_set_is_rerun(tmp_path):
    s = _searcher(tmp_path)
    asked = s.study.ask(s.dists)  # the kill falls between Optuna's ask and the tune_trial_id attr
    rerun = reconcile_study(_searcher(tmp_path).study, [])
    assert [(r["tune_trial_id"], r["params"]) for r in rerun] == [(None, asked.params)]
    states = [t.state for t in optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials]
    assert TrialState.RUNNING not in states
    assert reconcile_study(_searcher(tmp_path).study, []) == []


def test_resumed_sampler_does_not_replay_its_first_draws(tmp_path):
    s = _searcher(tmp_path)
    first = [s.suggest(f"t{i}")["knobs"] for i in range(3)]
    for i in range(3):
        s.on_trial_complete(f"t{i}", {"final": 1, "metric": 0.1 * i, "effective_gflops": 1.0 + i})
    resumed = _searcher(tmp_path)
    assert resumed.suggest("t3")["knobs"] not in first


def test_resumed_config_must_train_the_same_thing():
    a = _cfg().model_dump(mode="json")
    b = _cfg().model_dump(mode="json")
    b["search"]["trials"] = 20  # the budget may change
    check_same_config(a, b)
    b["training"]["lr"] = 0.5
    with pytest.raises(ResumeError, match="training"):
        check_same_config(a, b)


def test_a_resume_ends_the_child_runs_that_the_kill_left_open(tmp_path, monkeypatch):
    """The callback writes a trial's record first, then ends its MLflow run; a driver killed between
    the two left a recorded trial whose run stayed RUNNING (seen once in test_killed_search_resumes).
    A resume ends such runs as the record says, and leaves ended runs alone."""
    from mlflow.tracking import MlflowClient

    from econ_ray.config import load_config
    from econ_ray.search import driver
    from econ_ray.search.preflight import check_search

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = "search_spaces/tiny_priced.yaml"
    cfg, uri = load_config(path), f"sqlite:///{tmp_path / 'mlflow.db'}"

    def session(**kw):
        p = driver.plan(cfg, config_path=path, tracking_uri=uri, **kw)
        return p, driver.open_session(p, check_search(p.cfg, path, run_dir=str(p.root), tracking_uri=uri))

    p, s = session(run_dir=str(tmp_path / "run"))
    for tid in ("t-open", "t-ended", "t-failed"):
        s.tracker.start_child(tid, params={"lam": 1.0}, tags={"trial_id": tid})
    s.tracker.finish_child("t-ended", status="FINISHED", metrics={"metric": 0.5})
    metrics = {"metric": 0.7, "effective_gflops": 0.1, "checkpoint_path": "/ckpt", "feasible": True}
    write_record(p.root, TrialRecord("t-open", 0, "complete", {"lam": 1.0}, metrics=metrics))
    write_record(p.root, TrialRecord("t-ended", 1, "complete", {"lam": 2.0}, metrics={"metric": 0.9}))
    write_record(p.root, TrialRecord("t-failed", 2, "failed", {"lam": 3.0}, reason="diverged"))

    _, s2 = session(resume=str(p.root))
    client = MlflowClient(uri)
    run = client.get_run(s2.tracker.child_id("t-open"))
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"metric": 0.7, "effective_gflops": 0.1}  # the record's numbers only
    failed = client.get_run(s2.tracker.child_id("t-failed"))
    assert failed.info.status == "FAILED" and failed.data.tags["failure_reason"] == "diverged"
    ended = client.get_run(s2.tracker.child_id("t-ended"))
    assert ended.info.status == "FINISHED" and ended.data.metrics == {"metric": 0.5}  # not rewritten
