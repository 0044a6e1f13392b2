"""Multi-objective ASHA: non-dominated sorting, rung decisions, and that a stopped trial never counts."""

import math

import optuna
import pytest

from econ_ray.config import parse_config
from econ_ray.search.driver import make_scheduler
from econ_ray.search.moasha import (
    MOASHAScheduler,
    RungBook,
    crowding_distance,
    hv_order,
    hypervolume_2d,
    nadir_reference,
    non_dominated_fronts,
    rung_milestones,
    rung_order,
)
from econ_ray.search.optuna_searcher import ConstrainedOptunaSearch
from econ_ray.search.pareto import hypervolume, pareto_front
from econ_ray.search.records import TrialRecord, points_from


def test_fronts_of_a_known_set():
    # minimised (x, y): a, b, c trade off; d dominated by b; e dominated by d; f equal to a
    pts = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (1, 5)]
    assert non_dominated_fronts(pts) == [[0, 1, 2, 5], [3], [4]]


def test_nan_points_go_last():
    assert non_dominated_fronts([(math.nan, 1.0), (1.0, 1.0)]) == [[1], [0]]


def test_crowding_distance_extremes_infinite_and_middle_normalised():
    cd = crowding_distance([(0.0, 4.0), (1.0, 1.0), (4.0, 0.0)])
    assert cd[0] == math.inf and cd[2] == math.inf
    assert cd[1] == pytest.approx(4 / 4 + 4 / 4)


def test_rung_order_front_then_crowding():
    pts = [(0.0, 10.0), (5.0, 5.0), (6.0, 4.9), (10.0, 0.0), (7.0, 7.0)]
    order = rung_order(pts)
    assert order[:2] == [0, 3]  # the front's extremes
    assert order[2] == 1  # (5,5) is more isolated than (6,4.9)
    assert order[-1] == 4  # the dominated point


def test_hypervolume_2d_of_a_staircase_and_points_past_the_reference():
    # boxes below ref (4, 4): (1, 3) -> [1, 4] x [3, 4] = 3; (2, 1) -> [2, 4] x [1, 4] = 6; overlap [2, 4] x [3, 4] = 2
    assert hypervolume_2d([(1, 3), (2, 1)], (4, 4)) == pytest.approx(7.0)
    assert hypervolume_2d([(1, 3), (2, 1), (3, 3.5), (5, 0)], (4, 4)) == pytest.approx(7.0)  # dominated, outside
    assert hypervolume_2d([], (4, 4)) == 0.0


def test_hv_order_greedy_contribution_then_the_useless_points():
    ref = (0.0, 5.0)  # minimised (-metric, GFLOPs): metric must beat 0, GFLOPs below 5
    pts = [(-0.40, 3.4), (0.0, 0.01), (-0.38, 0.6), (-0.42, 1.2)]
    # alone: 0.40 * 1.6 = 0.64, 0 (metric at the reference), 0.38 * 4.4 = 1.672, 0.42 * 3.8 = 1.596;
    # after (-0.38, 0.6) is picked, (-0.42, 1.2) adds 0.04 * 3.8 = 0.152 and (-0.40, 3.4) only 0.02 * 1.6;
    # then (-0.40, 3.4) is dominated and the metric-0 point adds nothing: both follow in rung_order's order
    assert hv_order(pts, ref) == [2, 3, 1, 0]
    # plain non-dominated sorting puts the metric-0 point first: the cheapest point is a front extreme
    assert rung_order(pts)[0] == 1
    with pytest.raises(ValueError, match="2 objectives"):
        hv_order([(1.0, 2.0, 3.0)], (4.0, 4.0, 4.0))


def test_nadir_reference_adds_a_margin_of_the_range():
    assert nadir_reference([(0.0, 0.0), (1.0, 2.0)]) == pytest.approx((1.05, 2.1))


def test_hypervolume_rank_stops_a_collapsed_trial_that_crowding_keeps():
    """A trial whose metric collapsed to chance is the cheapest point, so non-dominated sorting keeps it
    (a front extreme) ahead of a trial that extends the front; hypervolume ranking does the opposite."""

    def run(book):
        return [
            book.decide("a", 10, (0.40, 1.0)),
            book.decide("collapsed", 10, (0.0, 0.01)),
            book.decide("c", 10, (0.41, 0.9)),
        ]

    assert run(RungBook(10, 3, maximize=(True, False))) == [True, False, False]
    assert run(RungBook(10, 3, maximize=(True, False), rank="hypervolume", reference=(0.0, None))) == [
        True,
        False,
        True,
    ]
    with pytest.raises(ValueError, match="rank"):
        RungBook(10, 3, rank="pareto")


def test_milestones():
    assert rung_milestones(10, 3, 100) == [10, 30, 90]
    assert rung_milestones(1, 2, None)[:4] == [1, 2, 4, 8]


def test_rung_book_keeps_top_third_and_stops_the_dominated():
    book = RungBook(grace_period=10, reduction_factor=3, maximize=(True, False))
    assert book.decide("early", 5, (0.1, 9.0))  # below the first rung: always continue
    assert book.decide("a", 10, (0.9, 2.0))  # first at the rung
    assert not book.decide("b", 10, (0.8, 3.0))  # dominated by a (lower metric, more GFLOPs)
    assert book.decide("a", 20, (0.0, 99.0))  # already judged at this rung: continue
    assert not book.decide("b", 30, (1.0, 0.1))  # once stopped, stays stopped
    # a trade-off point is non-dominated; with 3 recorded, ceil(3/3) = 1 kept: the crowding tie keeps the earlier
    assert not book.decide("c", 10, (0.5, 1.0))
    # with 4 recorded, 2 are kept: d (a new extreme, infinite crowding) gets in
    assert book.decide("d", 12, (0.95, 5.0))
    assert book.stopped == {"b", "c"}


def test_rung_book_validates():
    with pytest.raises(ValueError, match="grace_period"):
        RungBook(grace_period=0)
    with pytest.raises(ValueError, match="reduction_factor"):
        RungBook(grace_period=1, reduction_factor=1)


class _T:
    def __init__(self, tid):
        self.trial_id = tid


def test_tune_scheduler_ignores_final_reports_and_missing_keys():
    s = MOASHAScheduler(grace_period=10, reduction_factor=2)
    assert (
        s.on_trial_result(None, _T("a"), {"step": 10, "metric": 0.9, "effective_gflops": 1.0, "final": 0}) == "CONTINUE"
    )
    assert s.on_trial_result(None, _T("b"), {"step": 10, "metric": 0.1, "effective_gflops": 2.0, "final": 0}) == "STOP"
    assert (
        s.on_trial_result(None, _T("c"), {"steps": 10, "metric": 0.1, "effective_gflops": 2.0, "final": 1})
        == "CONTINUE"
    )
    assert s.on_trial_result(None, _T("d"), {"metric": 0.1}) == "CONTINUE"
    assert s.num_stopped == 1


def test_scheduler_selected_from_the_search_file():
    cfg = parse_config(
        {
            "attention": {"mode": "gates"},
            "search": {
                "space": {"lam": {"low": 0.1, "high": 1.0}},
                "scheduler": {"kind": "moasha", "grace_period": 50, "reduction_factor": 2},
            },
        },
        "s.yaml",
    )
    s = make_scheduler(cfg, maximize=False)
    assert isinstance(s, MOASHAScheduler) and s.book.rungs and s.book.maximize == (False, False)
    assert type(make_scheduler(parse_config({}, "s.yaml"), True)).__name__ == "FIFOScheduler"
    with pytest.raises(Exception, match="search.scheduler.reduction_factor"):
        parse_config({"search": {"scheduler": {"kind": "moasha", "reduction_factor": 0.5}}}, "s.yaml")
    with pytest.raises(Exception, match="search.scheduler.kind"):
        parse_config({"search": {"scheduler": {"kind": "asha"}}}, "s.yaml")
    with pytest.raises(Exception, match="search.scheduler.rank"):
        parse_config({"search": {"scheduler": {"kind": "moasha", "rank": "pareto"}}}, "s.yaml")
    hv = make_scheduler(
        parse_config(
            {"search": {"scheduler": {"kind": "moasha", "rank": "hypervolume", "reference_metric": 0.0}}}, "s.yaml"
        ),
        True,
    )
    assert hv.book.rank == "hypervolume" and hv.book.reference == (0.0, None)


def test_stopped_trial_is_pruned_and_kept_out_of_the_pareto_set(tmp_path):
    """What the driver does with a scheduler-stopped trial: Optuna PRUNED, no Pareto point, no hypervolume."""
    cfg = parse_config(
        {"attention": {"mode": "gates"}, "search": {"space": {"lam": {"low": 0.1, "high": 1.0}}}}, "s.yaml"
    )
    s = ConstrainedOptunaSearch(
        cfg.search.space, sampler="tpe", seed=0, n_trials=2, storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="t"
    )
    sched = MOASHAScheduler(grace_period=10, reduction_factor=3)
    s.suggest("done")
    s.suggest("stopped")
    assert (
        sched.on_trial_result(None, _T("done"), {"step": 10, "metric": 0.9, "effective_gflops": 1.0, "final": 0})
        == "CONTINUE"
    )
    last = {"step": 10, "metric": 0.5, "effective_gflops": 2.0, "final": 0}
    assert sched.on_trial_result(None, _T("stopped"), last) == "STOP"
    # Tune then calls the searcher with the trial's last (partial) result
    s.on_trial_complete("stopped", last)
    s.on_trial_complete("done", {"final": 1, "metric": 0.9, "effective_gflops": 1.0})
    states = {t.user_attrs["tune_trial_id"]: t.state for t in s.study.trials}
    assert states == {"done": optuna.trial.TrialState.COMPLETE, "stopped": optuna.trial.TrialState.PRUNED}
    # the callback records a trial without a final report as "stopped", even with a better partial result
    recs = [
        TrialRecord("done", 0, "complete", {}, metrics={"metric": 0.9, "effective_gflops": 1.0}),
        TrialRecord("stopped", 1, "stopped", {}, metrics={"metric": 0.99, "effective_gflops": 0.1}),
    ]
    pts = points_from(recs)
    assert [p.trial_id for p in pareto_front(pts)] == ["done"]
    assert hypervolume(pts, ref_metric=0.0, ref_gflops=2.0) == pytest.approx(0.9 * 1.0)


def test_local_trials_are_asked_to_stop_themselves(tmp_path):
    """With local storage the scheduler writes the trial's stop flag and lets it end itself (a Tune STOP
    would leave the Ray Train placement group behind, ray-project/ray#54305); the workers read it."""
    from econ_ray.search.moasha import stop_file
    from econ_ray.search.trial import _stop_requested

    class _C(_T):
        def __init__(self, tid):
            super().__init__(tid)
            self.config = {"train_storage": str(tmp_path / "train")}

    s = MOASHAScheduler(grace_period=10, reduction_factor=2)
    assert s.on_trial_result(None, _C("a"), {"step": 10, "metric": 0.9, "effective_gflops": 1.0}) == "CONTINUE"
    assert s.on_trial_result(None, _C("b"), {"step": 10, "metric": 0.1, "effective_gflops": 2.0}) == "CONTINUE"
    flag = stop_file({"train_storage": str(tmp_path / "train")}, "trial_b")
    assert flag.is_file() and _stop_requested(str(flag)) and s.num_stopped == 1
    assert not stop_file({"train_storage": str(tmp_path / "train")}, "trial_a").exists()
    assert not _stop_requested(str(tmp_path / "train" / "trial_a" / "STOP"))
    # asked once: later results of the stopping trial are not judged again
    assert s.on_trial_result(None, _C("b"), {"step": 20, "metric": 0.1, "effective_gflops": 2.0}) == "CONTINUE"
    assert s.num_stopped == 1
    assert stop_file({"train_storage": "s3://bucket/train"}, "trial_b") is None  # remote: Tune stops it
