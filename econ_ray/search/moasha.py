"""Multi-objective asynchronous successive halving (MOASHA) for the search (METHOD section 8).

Syne Tune's MOASHA idea on Ray Tune: asynchronous successive halving (ASHA) whose rung decision
ranks trials by *non-dominated sorting* of their objective vectors instead of one scalar. Rungs
sit at ``grace_period * reduction_factor**k`` of a time attribute (the training step of the
trial's intermediate evaluations by default). When a trial first reaches a rung its (metric,
effective GFLOPs) is recorded there and ranked against every trial recorded at that rung: by
non-dominated front, then by crowding distance inside the front (the front's extremes first,
ties by arrival); it goes on only if it is within the top ``ceil(n / reduction_factor)`` of the
``n`` recorded (always when it is the first). Asynchronous: nothing waits for a rung to fill.

Dominance and the 2-D hypervolume are :mod:`econ_ray.search.pareto`'s (:func:`dominates_vector`,
:func:`hypervolume_2d`, over minimised vectors). Pure math first (:func:`non_dominated_fronts`, :func:`crowding_distance`, :func:`rung_order`,
:class:`RungBook`), then the Tune glue (:class:`MOASHAScheduler`). The fast in-process benchmarks
drive :class:`RungBook` directly, so the decisions are the same code as in a Ray search.

A stopped trial's last report is not final (``final = 0``): the searcher tells Optuna PRUNED and
the driver keeps it out of the Pareto set and the registry (status ``stopped``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from econ_ray.search.pareto import dominates_vector, hypervolume_2d

__all__ = [
    "MOASHAScheduler",
    "RungBook",
    "crowding_distance",
    "hypervolume_2d",
    "non_dominated_fronts",
    "rung_order",
]

Vector = tuple[float, ...]  # objectives, every one minimised


def non_dominated_fronts(points: Sequence[Vector]) -> list[list[int]]:
    """Indices of ``points`` (all objectives minimised) split into fronts F1, F2, ... (Deb's sort).

    F1 holds the points no other point dominates; F2 those dominated only by F1; and so on. Equal
    points share a front. Points with a NaN objective go to one last front. O(n^2 m).
    """
    finite = [i for i, p in enumerate(points) if all(math.isfinite(x) for x in p)]
    bad = [i for i in range(len(points)) if i not in set(finite)]
    dominated_by: dict[int, list[int]] = {i: [] for i in finite}  # i -> points i dominates
    count = {i: 0 for i in finite}  # how many points dominate i
    for a in finite:
        for b in finite:
            if a != b and dominates_vector(points[a], points[b]):
                dominated_by[a].append(b)
                count[b] += 1
    fronts: list[list[int]] = []
    current = [i for i in finite if count[i] == 0]
    while current:
        fronts.append(current)
        nxt = []
        for a in current:
            for b in dominated_by[a]:
                count[b] -= 1
                if count[b] == 0:
                    nxt.append(b)
        current = sorted(nxt)
    if bad:
        fronts.append(bad)
    return fronts


def crowding_distance(points: Sequence[Vector]) -> list[float]:
    """NSGA-II crowding distance of each point within its own set (one front): larger = more isolated.

    Per objective, the two extremes get infinity and the others the normalised gap between their
    neighbours; the distances add over objectives. Sets of one or two points are all infinite.
    """
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    dist = [0.0] * n
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][m])
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi - lo <= 0:
            continue
        for k in range(1, n - 1):
            dist[order[k]] += (points[order[k + 1]][m] - points[order[k - 1]][m]) / (hi - lo)
    return dist


def rung_order(points: Sequence[Vector]) -> list[int]:
    """Indices of ``points`` best first: by non-dominated front, then crowding distance (larger first),
    then index (earlier arrival first)."""
    out: list[int] = []
    for front in non_dominated_fronts(points):
        cd = crowding_distance([points[i] for i in front])
        out.extend(i for _, i in sorted(zip(cd, front), key=lambda t: (-t[0], t[1])))
    return out


def nadir_reference(points: Sequence[Vector], margin: float = 0.05) -> Vector:
    """A reference that needs no prior: per objective, the worst finite value among ``points`` plus
    ``margin`` of the range (so a point worst in one objective still counts a little)."""
    finite = [p for p in points if all(math.isfinite(x) for x in p)]
    if not finite:
        return tuple(math.inf for _ in points[0]) if points else ()
    out = []
    for m in range(len(finite[0])):
        lo, hi = min(p[m] for p in finite), max(p[m] for p in finite)
        out.append(hi + margin * (hi - lo) if hi > lo else hi + margin * max(abs(hi), 1e-12))
    return tuple(out)


def hv_order(points: Sequence[Vector], ref: Vector) -> list[int]:
    """Indices of 2-D ``points`` best first by greedy hypervolume contribution w.r.t. ``ref``.

    Each pick is the point that adds most hypervolume to the points already picked, so the first
    ``k`` picked are (greedily) the ``k`` that cover most of the objective space: the trials that
    could still extend the front. Points that add nothing (dominated by the picked ones, or no
    better than ``ref``) follow in :func:`rung_order`'s order (front, then crowding, then arrival).
    """
    if points and len(points[0]) != 2:
        raise ValueError(f"hypervolume ranking needs 2 objectives, got {len(points[0])}")
    picked: list[int] = []
    left = list(range(len(points)))
    area = 0.0
    while left:
        gains = [(hypervolume_2d([points[j] for j in picked] + [points[i]], ref) - area, -i) for i in left]
        gain, neg_i = max(gains)
        if gain <= 0.0:
            break
        picked.append(-neg_i)
        left.remove(-neg_i)
        area += gain
    rest = set(left)
    return picked + [i for i in rung_order(points) if i in rest]


def rung_milestones(grace_period: float, reduction_factor: float, max_t: float | None) -> list[float]:
    """``grace_period * reduction_factor**k`` for k = 0, 1, ... below ``max_t`` (at most 32 rungs)."""
    out: list[float] = []
    t = float(grace_period)
    while len(out) < 32 and (max_t is None or t < max_t):
        out.append(t)
        t *= reduction_factor
    return out


RANKS = ("crowding", "hypervolume")


@dataclass
class RungBook:
    """The rungs of asynchronous successive halving, with multi-objective ranking.

    ``maximize`` says, per objective, whether it is maximised (the book stores everything as minimised).
    ``rank`` orders the trials at a rung: ``"crowding"`` (non-dominated front, then NSGA-II crowding
    distance: Syne Tune MOASHA's idea) or ``"hypervolume"`` (greedy hypervolume contribution,
    :func:`hv_order`, against ``reference`` in the objectives' own units (e.g. (chance metric, dense
    GFLOPs)); an entry left None is the rung's worst value of that objective, :func:`nadir_reference`).
    """

    grace_period: float
    reduction_factor: float = 3.0
    max_t: float | None = None
    maximize: tuple[bool, ...] = (True, False)
    rungs: dict[float, dict[str, Vector]] = field(default_factory=dict)  # milestone -> trial -> vector
    stopped: set[str] = field(default_factory=set)
    rank: str = "crowding"
    reference: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.rank not in RANKS:
            raise ValueError(f"rank must be one of {', '.join(RANKS)}, got {self.rank!r}")
        if self.grace_period <= 0:
            raise ValueError(f"grace_period must be > 0, got {self.grace_period}")
        if self.reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {self.reduction_factor}")
        for m in rung_milestones(self.grace_period, self.reduction_factor, self.max_t):
            self.rungs.setdefault(m, {})

    def _vector(self, values: Sequence[float]) -> Vector:
        return tuple(-float(v) if mx else float(v) for v, mx in zip(values, self.maximize))

    def order(self, points: Sequence[Vector]) -> list[int]:
        """Indices of the (minimised) ``points`` of one rung, best first, by ``self.rank``."""
        if self.rank == "crowding":
            return rung_order(points)
        nadir = nadir_reference(points)
        given = self.reference or (None,) * len(nadir)
        ref = tuple(
            nadir[m] if r is None else (-float(r) if self.maximize[m] else float(r)) for m, r in enumerate(given)
        )
        return hv_order(points, ref)

    def decide(self, trial_id: str, t: float, values: Sequence[float]) -> bool:
        """Record a result at time ``t``; return True to continue the trial, False to stop it.

        Only the highest rung the trial has newly reached is judged (ASHA); a trial already
        recorded there, or below the first rung, continues.
        """
        if trial_id in self.stopped:
            return False
        reached = [m for m in sorted(self.rungs, reverse=True) if t >= m]
        if not reached or trial_id in self.rungs[reached[0]]:
            return True
        rung = self.rungs[reached[0]]
        rung[trial_id] = self._vector(values)
        ids = list(rung)
        order = [ids[i] for i in self.order([rung[k] for k in ids])]
        keep = max(1, math.ceil(len(ids) / self.reduction_factor))
        if trial_id in order[:keep]:
            return True
        self.stopped.add(trial_id)
        return False


STOP_FILE = "STOP"


def stop_file(trial_config: dict, trial_name: str) -> Path | None:
    """Where a trial's workers look for the scheduler's stop request: ``TRAIN_STORAGE/TRIAL/STOP``
    (local storage only; None for remote storage, where the trial is stopped by Tune instead)."""
    storage = str(trial_config.get("train_storage") or "")
    if not storage or ("://" in storage and not storage.startswith("file://")):
        return None
    return Path(storage.removeprefix("file://"), trial_name, STOP_FILE)


class MOASHAScheduler(FIFOScheduler):
    """Ray Tune scheduler: stops trials that fall out of the top 1/eta at a rung by non-dominated rank.

    Reads ``time_attr`` and the objectives (``metric``, ``effective_gflops`` by default) from every
    intermediate result; results with ``final`` set (the trial's last report) are never judged.
    """

    def __init__(
        self,
        *,
        grace_period: float,
        reduction_factor: float = 3.0,
        max_t: float | None = None,
        time_attr: str = "step",
        objectives: tuple[str, ...] = ("metric", "effective_gflops"),
        maximize: tuple[bool, ...] = (True, False),
        rank: str = "hypervolume",
        reference: tuple[float | None, ...] | None = None,
    ) -> None:
        super().__init__()
        self.time_attr = time_attr
        self.objectives = objectives
        self.book = RungBook(grace_period, reduction_factor, max_t, maximize, rank=rank, reference=reference)
        self.num_stopped = 0
        self._asked: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objectives are fixed at construction

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get("final") or self.time_attr not in result:
            return TrialScheduler.CONTINUE
        raw = [result.get(k) for k in self.objectives]
        values: list[float] = [v for v in raw if isinstance(v, (int, float))]
        if len(values) != len(raw):
            return TrialScheduler.CONTINUE
        if trial.trial_id in self._asked:
            return TrialScheduler.CONTINUE  # asked to stop; it ends itself at its next evaluation
        if self.book.decide(trial.trial_id, float(result[self.time_attr]), values):
            return TrialScheduler.CONTINUE
        self.num_stopped += 1
        flag = stop_file(getattr(trial, "config", None) or {}, f"trial_{trial.trial_id}")
        if flag is not None:
            # Ray 2.60: stopping a Tune trial kills its actor but not the placement group of the Ray
            # Train run inside it (ray-project/ray#54305): later trials then wait for those CPUs forever.
            # So the trial is asked to end itself: its workers see the flag at their next evaluation
            # and return; its last result stays partial (final = 0), so it is recorded as stopped.
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.write_text(f"stopped by MOASHA at {self.time_attr} {result[self.time_attr]}\n")
            self._asked.add(trial.trial_id)
            return TrialScheduler.CONTINUE
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        filled = ", ".join(f"{m:g}: {len(r)}" for m, r in sorted(self.book.rungs.items()))
        return f"Using MOASHA: num_stopped={self.num_stopped}; rungs {{{filled}}}"
