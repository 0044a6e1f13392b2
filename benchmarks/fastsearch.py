"""The fast in-process search used by search_efficiency.py and early_stopping.py.

Same searcher (``ConstrainedOptunaSearch``, ask/tell through its Searcher API), same Pareto and
hypervolume code (``econ_ray.search.pareto`` through the driver's ``points_from``), same early-stopping
decisions (``econ_ray.search.moasha.RungBook``, the object the Tune scheduler wraps) as ``econ-ray search``;
only the trial runs here, sequentially, as ``train_run`` with the plain torch engine (no Ray, no DeepSpeed).
Trial cost is counted in trial-steps: dense warm-up steps + main-phase steps actually taken.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from econ_ray.config import load_config, parse_config
from econ_ray.config.schema import SearchSpaceFile
from econ_ray.search import TrialRecord, chance_of, check_run, points_from, trial_config
from econ_ray.search.moasha import RungBook
from econ_ray.search.optuna_searcher import ConstrainedOptunaSearch
from econ_ray.search.pareto import hypervolume, reference_point
from econ_ray.search.trial import REPORT_KEYS
from econ_ray.training import RunHooks, train_run

optuna.logging.set_verbosity(optuna.logging.WARNING)

FAST_OVERRIDES = {
    "objective.dense_steps": 50,
    "training.max_steps": 120,
    "training.eval_every": 40,
    "data.builtin.n_train": 1200,
    "data.builtin.n_validation": 400,
}


def load_fast(path: str, overrides: dict[str, Any] | None = None) -> SearchSpaceFile:
    """The search file with the fast overrides (dotted keys) applied."""
    data = load_config(path).model_dump(mode="json")
    for key, value in {**FAST_OVERRIDES, **(overrides or {})}.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
        node[last] = value
    return parse_config(data, path)


class _Stop(Exception):
    """Raised from on_eval when the rung book stops the trial."""


@dataclass
class FastTrial:
    trial_id: str
    status: str  # complete | stopped
    knobs: dict[str, Any]
    steps: int  # trial-steps spent (dense + main)
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # the intermediate evaluations it reported


def run_trials(
    cfg: SearchSpaceFile, *, sampler: str, seed: int, n_trials: int, book: RungBook | None = None
) -> list[FastTrial]:
    """Sequential search: ask the searcher, train the trial in-process, tell the searcher."""
    torch.set_num_threads(1)  # 2 shared cores: more threads only contend
    maximize = check_run(cfg, cfg.name).maximize
    searcher = ConstrainedOptunaSearch(
        cfg.search.space,
        sampler=sampler,
        seed=seed,
        n_trials=n_trials,
        storage=None,
        study_name=f"{sampler}-{seed}",
        maximize_metric=maximize,
    )
    out: list[FastTrial] = []
    for i in range(n_trials):
        tid = f"t{i:03d}"
        knobs = searcher.suggest(tid)["knobs"]
        rc = trial_config(cfg, knobs)
        rc.training.progress = False
        dense = rc.objective.dense_steps if rc.objective.dense_reference == "warmup" else 0
        seen: dict[str, Any] = {"steps": 0, "last": None, "history": []}

        def on_step(rec: dict[str, Any], seen: dict[str, Any] = seen) -> None:
            seen["steps"] = rec["step"]

        def on_eval(rec: dict[str, Any], seen: dict[str, Any] = seen, tid: str = tid) -> None:
            seen["last"] = rec
            seen["history"].append({k: float(rec[k]) for k in ("step", "metric", "effective_gflops")})
            if book is not None and not book.decide(tid, rec["step"], (rec["metric"], rec["effective_gflops"])):
                raise _Stop

        t0 = time.perf_counter()
        try:
            result = train_run(rc, hooks=RunHooks(on_step=on_step, on_eval=on_eval))
        except _Stop:
            searcher.on_trial_complete(tid, {**seen["last"], "final": 0})  # told PRUNED
            out.append(
                FastTrial(
                    tid,
                    "stopped",
                    knobs,
                    dense + seen["steps"],
                    time.perf_counter() - t0,
                    dict(seen["last"]),
                    seen["history"],
                )
            )
            continue
        final = {k: result.summary.get(k) for k in REPORT_KEYS}
        searcher.on_trial_complete(tid, {**final, "final": 1})
        out.append(
            FastTrial(tid, "complete", knobs, dense + seen["steps"], time.perf_counter() - t0, final, seen["history"])
        )
    return out


def records(trials: list[FastTrial]) -> list[TrialRecord]:
    """Driver records: a stopped trial has no final metrics, exactly as the Tune callback records it."""
    return [
        TrialRecord(t.trial_id, i, t.status, t.knobs, metrics=t.metrics if t.status == "complete" else {})
        for i, t in enumerate(trials)
    ]


def reference(cfg: SearchSpaceFile, trials: list[FastTrial]) -> tuple[float, float]:
    """METHOD 8's reference point: (chance metric, 1.05 x dense GFLOPs) from any complete trial."""
    recs = records(trials)
    dense = next(float(t.metrics["dense_total_gflops"]) for t in trials if t.status == "complete")
    return reference_point(dense_gflops=dense, chance_metric=chance_of(check_run(cfg, cfg.name), recs))


def hv_curve(cfg: SearchSpaceFile, trials: list[FastTrial], ref: tuple[float, float]) -> list[dict[str, float]]:
    """Hypervolume after each trial, with cumulative trials and trial-steps."""
    maximize = check_run(cfg, cfg.name).maximize
    pts = points_from(records(trials))
    curve, steps = [], 0
    for k, t in enumerate(trials, 1):
        steps += t.steps
        hv = hypervolume(pts[:k], ref_metric=ref[0], ref_gflops=ref[1], maximize_metric=maximize)
        curve.append({"trials": k, "trial_steps": steps, "hypervolume": hv})
    return curve


def first_reaching(curve: list[dict[str, float]], target: float, key: str = "trials") -> float:
    """The first x (trials or trial_steps) at which the curve reaches ``target`` (inf if never)."""
    for row in curve:
        if row["hypervolume"] >= target - 1e-15:
            return row[key]
    return math.inf
