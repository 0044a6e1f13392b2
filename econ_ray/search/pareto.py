"""Pareto set and hypervolume of a two-objective search (METHOD section 8).

The two objectives are the task metric (maximised, or minimised when it is perplexity:
``maximize_metric=False``) and the effective compute of one forward pass, in GFLOPs
(always minimised).  Everything here is pure: plain data in, plain data out, no I/O.

Units: ``metric`` is in the task metric's own units (accuracy is a fraction in [0, 1],
MCC / Pearson / Spearman in [-1, 1], perplexity in tokens, i.e. an effective branching
factor); ``gflops`` is effective GFLOPs (1e9 floating-point operations) per sequence.
A hypervolume is therefore in metric units x GFLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TrialPoint",
    "chance_metric",
    "dominates",
    "dominates_vector",
    "hypervolume",
    "hypervolume_2d",
    "hypervolume_history",
    "pareto_front",
    "reference_point",
]


@dataclass(frozen=True)
class TrialPoint:
    """One finished (or failed) trial of the search, as a point in objective space.

    Attributes:
        trial_id: Ray Tune trial id (any unique string).
        metric: task metric, in its own units (see the module docstring).
        gflops: effective GFLOPs per sequence (batch 1) of the trained model.
        feasible: whether the trial met the search-level constraints (for example
            "accuracy >= dense - 1 pt"); infeasible trials never enter the front.
        complete: whether the trial finished normally; failed trials and trials stopped
            early never enter the front (their numbers are not final).
        order: completion order, 0-based or 1-based, used only to sort the history.
        params: the sampled hyper-parameters (lam, alpha, beta, tau, objective, ...).
    """

    trial_id: str
    metric: float
    gflops: float
    feasible: bool = True
    complete: bool = True
    order: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)


def _better_metric(a: float, b: float, maximize_metric: bool) -> bool:
    """Whether metric value ``a`` is strictly better than ``b``."""
    return a > b if maximize_metric else a < b


# ---------------------------------------------------------------- objective vectors
# The two functions below are the project's one definition of dominance and of the 2-D
# hypervolume; the TrialPoint functions here and the MOASHA scheduler (econ_ray.search.moasha)
# both use them.


def dominates_vector(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool] | None = None) -> bool:
    """Whether objective vector ``a`` Pareto-dominates ``b``: no worse in every objective and strictly
    better in at least one. ``maximize`` says per objective whether it is maximised (None: all minimised).
    A NaN objective compares false both ways, so such a vector neither dominates nor is dominated."""
    flags = [False] * len(a) if maximize is None else list(maximize)
    no_worse = all((x >= y) if mx else (x <= y) for x, y, mx in zip(a, b, flags))
    return no_worse and any(_better_metric(x, y, mx) for x, y, mx in zip(a, b, flags))


def hypervolume_2d(points: Iterable[Sequence[float]], ref: Sequence[float]) -> float:
    """Area dominated by 2-D ``points`` (both objectives minimised) inside the box below ``ref``.

    Points not strictly better than ``ref`` in both objectives (and points with a NaN or infinite
    objective) add nothing. O(n log n): one sort along the first objective, then a sweep towards
    ``ref[0]`` in which the staircase height is the best gain ``ref[1] - y`` of every point so far.
    """
    boxes = sorted(
        (p[0], ref[1] - p[1])
        for p in points
        if math.isfinite(p[0]) and math.isfinite(p[1]) and p[0] < ref[0] and p[1] < ref[1]
    )
    area, best = 0.0, 0.0
    for i, (x, gain) in enumerate(boxes):
        best = max(best, gain)
        x_next = boxes[i + 1][0] if i + 1 < len(boxes) else ref[0]
        area += (x_next - x) * best
    return area


# ---------------------------------------------------------------- trial points


def _vector(p: TrialPoint) -> tuple[float, float]:
    return (p.metric, p.gflops)


def dominates(a: TrialPoint, b: TrialPoint, *, maximize_metric: bool = True) -> bool:
    """Whether ``a`` Pareto-dominates ``b``.

    ``a`` dominates ``b`` when it is no worse in both objectives (metric, GFLOPs) and
    strictly better in at least one.  Only the values are compared: feasibility and
    completeness are the caller's filter (see :func:`pareto_front`).
    """
    return dominates_vector(_vector(a), _vector(b), (maximize_metric, False))


def _eligible(points: Iterable[TrialPoint]) -> list[TrialPoint]:
    """Feasible, complete points with finite metric and GFLOPs (NaN/inf come from diverged runs)."""
    return [p for p in points if p.feasible and p.complete and math.isfinite(p.metric) and math.isfinite(p.gflops)]


def pareto_front(points: Iterable[TrialPoint], *, maximize_metric: bool = True) -> list[TrialPoint]:
    """The non-dominated points among the feasible, complete, finite ones.

    Returns them sorted by ``gflops`` ascending (so the metric is strictly improving along
    the list).  Of exact duplicates (same metric and same GFLOPs) only the first by
    ``order`` is kept (ties in ``order`` keep the first in input order).  O(n log n).
    """
    sign = 1.0 if maximize_metric else -1.0
    # Cheapest first; among equal GFLOPs the best metric first; among exact duplicates
    # the earliest ``order`` first.  ``sorted`` is stable, so input order breaks the rest.
    candidates = sorted(_eligible(points), key=lambda p: (p.gflops, -sign * p.metric, p.order))
    front: list[TrialPoint] = []
    for p in candidates:
        # Every kept point is cheaper or as cheap as ``p``; ``p`` survives only if its
        # metric is strictly better than the best seen so far (otherwise it is dominated,
        # or an exact duplicate of a point already kept).
        if not front or _better_metric(p.metric, front[-1].metric, maximize_metric):
            front.append(p)
    return front


def hypervolume(
    points: Iterable[TrialPoint],
    *,
    ref_metric: float,
    ref_gflops: float,
    maximize_metric: bool = True,
) -> float:
    """2-D hypervolume (metric units x GFLOPs) dominated by the feasible complete points.

    The region counted is the union, over the eligible points ``p``, of the boxes between
    ``p`` and the reference point ``(ref_metric, ref_gflops)``.  Points that are not
    strictly better than the reference in both objectives contribute nothing (their box
    is empty).  Dominated points add nothing to the union, so no front is needed first.
    O(n log n): one sort by GFLOPs, then a sweep towards ``ref_gflops``.
    """
    if not (math.isfinite(ref_metric) and math.isfinite(ref_gflops)):
        raise ValueError(f"reference point must be finite, got ({ref_metric}, {ref_gflops})")
    # Both objectives as minimised, GFLOPs first (the sweep axis): the staircase height of
    # :func:`hypervolume_2d` is then the metric's distance past the reference in the improving direction.
    sign = -1.0 if maximize_metric else 1.0
    return hypervolume_2d(((p.gflops, sign * p.metric) for p in _eligible(points)), (ref_gflops, sign * ref_metric))


def hypervolume_history(
    points: Sequence[TrialPoint],
    *,
    ref_metric: float,
    ref_gflops: float,
    maximize_metric: bool = True,
) -> list[tuple[int, float]]:
    """Hypervolume after each trial, in completion ``order``.

    Returns one ``(n_completed, hv)`` pair per point: ``n_completed`` counts every trial
    finished so far (failed and infeasible ones included, so the x axis is the search's
    spend), ``hv`` is :func:`hypervolume` of the feasible complete ones among them.  It is
    non-decreasing because adding a point never shrinks a union of boxes.
    O(n^2 log n), fine for the hundreds of trials a search runs.
    """
    ordered = sorted(points, key=lambda p: p.order)  # stable: input order breaks ties
    history: list[tuple[int, float]] = []
    for k in range(1, len(ordered) + 1):
        hv = hypervolume(ordered[:k], ref_metric=ref_metric, ref_gflops=ref_gflops, maximize_metric=maximize_metric)
        history.append((k, hv))
    return history


def reference_point(*, dense_gflops: float, chance_metric: float) -> tuple[float, float]:
    """The fixed hypervolume reference ``(metric, GFLOPs)`` of METHOD section 8.

    ``(chance_metric, 1.05 * dense_gflops)``: a model must beat chance and cost less than
    5 % above the dense model to count.  ``dense_gflops`` is the effective GFLOPs of the
    dense (lambda = 0) model; the 5 % margin keeps the dense model itself inside the box.
    """
    if not (math.isfinite(dense_gflops) and dense_gflops > 0.0):
        raise ValueError(f"dense_gflops must be a positive finite number, got {dense_gflops}")
    return (float(chance_metric), 1.05 * float(dense_gflops))


def chance_metric(
    metric_name: str,
    *,
    num_labels: int | None = None,
    vocab_size: int | None = None,
) -> float:
    """The metric of a predictor that knows nothing, in the metric's units.

    * ``accuracy``: ``1 / num_labels`` (uniform guessing over the classes);
    * ``mcc``, ``pearson``, ``spearman``: ``0.0`` (no correlation);
    * ``perplexity``: ``vocab_size`` (a uniform distribution over the vocabulary has
      cross-entropy ``ln V`` nats, so perplexity ``V``).

    Raises ``ValueError`` for an unknown metric or a missing/invalid size.
    """
    name = metric_name.lower()
    if name == "accuracy":
        if num_labels is None or num_labels < 1:
            raise ValueError(f"accuracy needs num_labels >= 1, got {num_labels}")
        return 1.0 / num_labels
    if name in ("mcc", "pearson", "spearman"):
        return 0.0
    if name == "perplexity":
        if vocab_size is None or vocab_size < 1:
            raise ValueError(f"perplexity needs vocab_size >= 1, got {vocab_size}")
        return float(vocab_size)
    raise ValueError(f"unknown metric {metric_name!r}: expected accuracy, mcc, pearson, spearman or perplexity")
