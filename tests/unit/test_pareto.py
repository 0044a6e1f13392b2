"""Pareto front and hypervolume against values computed by hand."""

from __future__ import annotations

import math
import random

import pytest

from econ_ray.search.pareto import (
    TrialPoint,
    chance_metric,
    dominates,
    dominates_vector,
    hypervolume,
    hypervolume_2d,
    hypervolume_history,
    pareto_front,
    reference_point,
)


def P(tid: str, metric: float, gflops: float, **kw) -> TrialPoint:
    return TrialPoint(trial_id=tid, metric=metric, gflops=gflops, **kw)


# Five points, accuracy vs GFLOPs; C and E are dominated (by B; by A and B).
A = P("A", 0.70, 1.0, order=0)
B = P("B", 0.80, 2.0, order=2)
C = P("C", 0.75, 2.5, order=3)
D = P("D", 0.90, 4.0, order=4)
E = P("E", 0.60, 3.0, order=1)
FIVE = [C, E, D, A, B]  # deliberately unsorted
REF = dict(ref_metric=0.5, ref_gflops=5.0)


def ids(points):
    return [p.trial_id for p in points]


# ---------------------------------------------------------------- dominates


def test_dominates_basic_and_strictness():
    assert dominates(B, C)  # better metric, fewer GFLOPs
    assert dominates(A, E)
    assert not dominates(C, B)
    assert not dominates(A, B)  # trade-off: neither dominates
    assert not dominates(B, A)
    assert not dominates(A, A)  # equal points do not dominate each other
    assert dominates(P("x", 0.7, 0.5), A)  # same metric, cheaper
    assert dominates(P("x", 0.8, 1.0), A)  # same GFLOPs, better metric


def test_dominates_vector_any_number_of_objectives_and_directions():
    assert dominates_vector((1.0, 2.0, 3.0), (1.0, 2.0, 4.0))  # all minimised by default
    assert not dominates_vector((1.0, 2.0), (1.0, 2.0))
    assert not dominates_vector((0.0, 3.0), (1.0, 2.0))  # trade-off
    assert dominates_vector((0.9, 1.0), (0.8, 1.0), (True, False))
    assert not dominates_vector((math.nan, 1.0), (0.5, 2.0), (True, False))
    assert not dominates_vector((0.5, 2.0), (math.nan, 1.0), (True, False))


def test_hypervolume_is_the_vector_hypervolume_of_the_minimised_points():
    pts = [P("a", 0.9, 2.0), P("b", 0.7, 1.0), P("c", 0.6, 3.0)]
    hv = hypervolume(pts, ref_metric=0.5, ref_gflops=4.0)
    assert hv == hypervolume_2d([(p.gflops, -p.metric) for p in pts], (4.0, -0.5))
    assert hv == pytest.approx(0.2 * 1.0 + 0.4 * 2.0)


def test_dominates_minimisation():
    lo = P("lo", 5.0, 1.0)
    hi = P("hi", 8.0, 1.0)
    assert dominates(lo, hi, maximize_metric=False)
    assert not dominates(hi, lo, maximize_metric=False)
    assert dominates(hi, lo, maximize_metric=True)


# ---------------------------------------------------------------- front


def test_front_of_five_points_drops_the_two_dominated():
    assert ids(pareto_front(FIVE)) == ["A", "B", "D"]  # sorted by GFLOPs ascending


def test_infeasible_and_incomplete_never_enter_the_front():
    # Both would dominate every other point.
    bad_feasible = P("infeasible", 0.99, 0.1, feasible=False)
    bad_complete = P("stopped", 0.99, 0.1, complete=False)
    nan_metric = P("nan", math.nan, 0.1)
    inf_gflops = P("inf", 0.99, math.inf)
    front = pareto_front(FIVE + [bad_feasible, bad_complete, nan_metric, inf_gflops])
    assert ids(front) == ["A", "B", "D"]


def test_front_minimisation_mode():
    # Perplexity: lower is better.  Q is dominated by R (worse ppl, more GFLOPs).
    pts = [P("P", 10.0, 1.0), P("Q", 8.0, 3.0), P("R", 5.0, 2.0), P("S", 4.0, 6.0)]
    assert ids(pareto_front(pts, maximize_metric=False)) == ["P", "R", "S"]
    # Read as "higher is better", P (highest value, fewest GFLOPs) dominates all the others.
    assert ids(pareto_front(pts, maximize_metric=True)) == ["P"]


def test_exact_duplicates_keep_first_by_order():
    late = P("late", 0.8, 2.0, order=5)
    early = P("early", 0.8, 2.0, order=3)
    assert ids(pareto_front([late, early])) == ["early"]
    # Same metric at equal GFLOPs but with a better metric elsewhere: the better one wins.
    assert ids(pareto_front([late, P("better", 0.85, 2.0, order=9)])) == ["better"]


def test_empty_front():
    assert pareto_front([]) == []
    assert pareto_front([P("x", 0.9, 1.0, feasible=False)]) == []


# ---------------------------------------------------------------- hypervolume
#
# Reference (metric 0.5, GFLOPs 5.0).  Metric up, GFLOPs right; the dominated region
# lies to the right of and below each point, down to 0.5 and out to 5.0:
#
#  0.9 |                      D+-----+
#  0.8 |       B+-------------|      |
#  0.7 |  A+---|              |      |
#  0.5 +---+---+--------------+------+  <- ref_metric
#      0   1   2              4      5  <- ref_gflops = 5
#
#  {A}:       (5-1) * 0.2                             = 0.8
#  {A,B}:     (2-1) * 0.2 + (5-2) * 0.3               = 0.2 + 0.9       = 1.1
#  {A,B,D}:   (2-1) * 0.2 + (4-2) * 0.3 + (5-4) * 0.4 = 0.2 + 0.6 + 0.4 = 1.2


def test_hypervolume_one_two_three_points_by_hand():
    assert hypervolume([A], **REF) == pytest.approx(0.8)
    assert hypervolume([A, B], **REF) == pytest.approx(1.1)
    assert hypervolume([A, B, D], **REF) == pytest.approx(1.2)


def test_dominated_points_add_nothing():
    assert hypervolume(FIVE, **REF) == pytest.approx(1.2)


def test_hypervolume_empty_is_zero():
    assert hypervolume([], **REF) == 0.0


def test_points_beyond_the_reference_are_ignored():
    beyond = [
        P("too-costly", 0.95, 6.0),  # GFLOPs past the reference
        P("at-ref-gflops", 0.95, 5.0),  # not strictly better in GFLOPs
        P("below-chance", 0.40, 0.5),  # metric worse than the reference
        P("at-chance", 0.50, 0.5),  # not strictly better in metric
    ]
    assert hypervolume(beyond, **REF) == 0.0
    assert hypervolume([A, B, D] + beyond, **REF) == pytest.approx(1.2)


def test_infeasible_and_incomplete_add_nothing_to_hypervolume():
    extra = [P("inf", 0.99, 0.1, feasible=False), P("stop", 0.99, 0.1, complete=False)]
    assert hypervolume([A, B, D] + extra, **REF) == pytest.approx(1.2)


def test_hypervolume_minimisation_by_hand():
    # Perplexity with reference (20, 4): P=(10 ppl, 1 GF), R=(5 ppl, 2 GF), Q dominated.
    #   [1,2) * (20-10) + [2,4) * (20-5) = 10 + 30 = 40
    pts = [P("P", 10.0, 1.0), P("Q", 8.0, 3.0), P("R", 5.0, 2.0)]
    assert hypervolume(pts, ref_metric=20.0, ref_gflops=4.0, maximize_metric=False) == pytest.approx(40.0)


def test_hypervolume_matches_grid_count():
    # Integer coordinates: the area equals the number of unit cells [g, g+1) x [m-1, m)
    # dominated by some point, counted by brute force.
    rng = random.Random(0)
    for _ in range(20):
        pts = [P(str(i), rng.randint(0, 10), rng.randint(0, 10)) for i in range(rng.randint(0, 8))]
        ref_m, ref_g = 2, 9
        cells = 0
        for gx in range(0, ref_g):
            for my in range(ref_m + 1, 11):
                cells += any(p.gflops <= gx and p.metric >= my for p in pts)
        assert hypervolume(pts, ref_metric=ref_m, ref_gflops=ref_g) == pytest.approx(cells)


# ---------------------------------------------------------------- history


def test_history_counts_every_trial_and_is_monotone():
    failed = P("failed", 0.99, 0.1, complete=False, order=5)
    infeasible = P("infeasible", 0.99, 0.1, feasible=False, order=1)
    pts = [D, failed, B, infeasible, A]  # unsorted on purpose; A, B, D have orders 0, 2, 4
    hist = hypervolume_history(pts, **REF)
    assert len(hist) == len(pts)
    assert [n for n, _ in hist] == [1, 2, 3, 4, 5]
    expected = [0.8, 0.8, 1.1, 1.2, 1.2]  # A; +infeasible; +B; +D; +failed
    assert [h for _, h in hist] == pytest.approx(expected)
    assert all(h1 <= h2 for (_, h1), (_, h2) in zip(hist, hist[1:]))


def test_history_empty():
    assert hypervolume_history([], **REF) == []


# ---------------------------------------------------------------- reference / chance


def test_reference_point():
    assert reference_point(dense_gflops=2.0, chance_metric=0.5) == pytest.approx((0.5, 2.1))
    with pytest.raises(ValueError):
        reference_point(dense_gflops=0.0, chance_metric=0.5)


def test_chance_metric():
    assert chance_metric("accuracy", num_labels=3) == pytest.approx(1 / 3)
    assert chance_metric("accuracy", num_labels=2) == 0.5
    assert chance_metric("mcc") == 0.0
    assert chance_metric("pearson") == 0.0
    assert chance_metric("spearman") == 0.0
    assert chance_metric("perplexity", vocab_size=50) == 50.0
    with pytest.raises(ValueError):
        chance_metric("bleu")
    with pytest.raises(ValueError):
        chance_metric("accuracy")
    with pytest.raises(ValueError):
        chance_metric("perplexity")


# ---------------------------------------------------------------- edges (each pins one behaviour)


def test_hypervolume_2d_ignores_infinite_and_nan_coordinates():
    # (-inf, 0) would be "better" than the reference in both objectives and give an infinite area
    ref = (4.0, 1.0)
    assert hypervolume_2d([(-math.inf, 0.0), (math.nan, 0.0), (1.0, -math.inf)], ref) == 0.0
    assert hypervolume_2d([(-math.inf, 0.0), (2.0, 0.5)], ref) == pytest.approx((4.0 - 2.0) * 0.5)


def test_front_minimisation_keeps_the_best_of_equal_gflops():
    # perplexity at equal GFLOPs: only the lower one is on the front
    pts = [P("worse", 9.0, 2.0, order=0), P("better", 6.0, 2.0, order=1), P("cheap", 12.0, 1.0, order=2)]
    assert ids(pareto_front(pts, maximize_metric=False)) == ["cheap", "better"]


def test_history_of_a_minimised_metric():
    # perplexity, reference (20, 4): P alone [1, 4) * 10 = 30; with R (5 ppl, 2 GF): 10 + 2 * 15 = 40
    pts = [P("P", 10.0, 1.0, order=0), P("R", 5.0, 2.0, order=1)]
    hist = hypervolume_history(pts, ref_metric=20.0, ref_gflops=4.0, maximize_metric=False)
    assert hist == [(1, pytest.approx(30.0)), (2, pytest.approx(40.0))]


def test_hypervolume_rejects_a_non_finite_reference():
    with pytest.raises(ValueError, match=r"^reference point must be finite, got \(inf, 5.0\)$"):
        hypervolume([A], ref_metric=math.inf, ref_gflops=5.0)
    with pytest.raises(ValueError, match=r"^reference point must be finite, got \(0.5, nan\)$"):
        hypervolume([A], ref_metric=0.5, ref_gflops=math.nan)


def test_reference_point_of_a_model_under_one_gflop():
    # the tiny demo models cost a fraction of a GFLOP: any positive finite dense cost is valid
    assert reference_point(dense_gflops=0.02, chance_metric=0.0) == pytest.approx((0.0, 0.021))
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^dense_gflops must be a positive finite number, got "):
            reference_point(dense_gflops=bad, chance_metric=0.5)


def test_chance_metric_smallest_sizes_and_messages():
    # sizes >= 1 are valid, 1 included (a single class, a one-token vocabulary)
    assert chance_metric("accuracy", num_labels=1) == 1.0
    assert chance_metric("perplexity", vocab_size=1) == 1.0
    assert chance_metric("Accuracy", num_labels=4) == 0.25  # names are case-insensitive
    with pytest.raises(ValueError, match=r"^accuracy needs num_labels >= 1, got 0$"):
        chance_metric("accuracy", num_labels=0)
    with pytest.raises(ValueError, match=r"^perplexity needs vocab_size >= 1, got None$"):
        chance_metric("perplexity")
    with pytest.raises(
        ValueError, match=r"^unknown metric 'bleu': expected accuracy, mcc, pearson, spearman or perplexity$"
    ):
        chance_metric("bleu")
