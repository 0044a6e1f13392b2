"""The end of a search: feasibility, the Pareto set and its hypervolume, the run folder's files, and
registration of the Pareto models in the MLflow registry (aliased ``rank-1``, ``rank-2``, ...).

Everything here works from the trial records (``econ_ray.search.records``) and the pre-flight's
facts (the metric, its direction, its chance level), so a finished run folder can be summarised
again without Ray.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from econ_ray.config.schema import SearchSpaceFile
from econ_ray.search.pareto import (
    TrialPoint,
    hypervolume,
    hypervolume_history,
    pareto_front,
    reference_point,
)
from econ_ray.search.preflight import RunFacts
from econ_ray.search.records import TrialRecord, cost_label, dense_cost, dense_of, finite, points_from
from econ_ray.search.space import trial_config, trial_params

PARETO_FIELDS = (
    "rank",
    "trial_id",
    "method",
    "metric_name",
    "metric",
    "cost_key",
    "static_gflops",
    "effective_gflops",
    "latency_ms",
    "dense_total_gflops",
    "dense_gflops",
    "seq_len",
    "lam",
    "alpha",
    "beta",
    "tau",
    "target_ratio",
    "target_gflops",
    "objective",
    "attention_density",
    "ffn_density",
    "ce",
)
# the Pareto fields read from the trial's final report as they are
_REPORTED = PARETO_FIELDS[6:]
# what a registered version is tagged with from its trial's final metrics (the knobs come from its RunConfig);
# cost_key names the tag that budgets are read from (registry best --max-gflops)
REGISTRY_METRIC_TAGS = (
    "metric",
    "metric_name",
    "method",
    "cost_key",
    "static_gflops",
    "effective_gflops",
    "latency_ms",
    "latency_threads",
    "dense_gflops",
    "dense_total_gflops",
    "seq_len",
    "target_ratio",
    "target_gflops",
)
PARENT_ARTIFACTS = (
    "pareto.csv",
    "pareto.json",
    "pareto.png",
    "hypervolume.csv",
    "hypervolume.png",
    "trials.csv",
    "summary.json",
    "config.yaml",
)

Constraint = Callable[[dict[str, Any]], float]


class SearchError(RuntimeError):
    """A search that cannot start or finish (bad cluster size, storage, tracking, a lost checkpoint)."""


def make_constraints(cfg: SearchSpaceFile, maximize: bool) -> list[Constraint]:
    """Search-level constraints in Optuna's convention (feasible iff value <= 0), on a trial's final
    report: ``search.min_metric_vs_dense``, and for searches that run the constrained objective, the
    trial's own ceiling (its ``feasible``: a certified snapshot whose validation CE is within tau)."""
    cons: list[Constraint] = []
    space_kinds = cfg.search.space.objective or []
    if cfg.objective.kind == "constrained" or "constrained" in space_kinds:

        def own_ceiling(r: dict[str, Any]) -> float:
            return 1.0 if r.get("feasible") is False else 0.0

        cons.append(own_ceiling)
    pts = cfg.search.min_metric_vs_dense
    if pts is not None:
        margin = pts / 100.0  # "points" of a metric reported as a fraction

        def metric_vs_dense(r: dict[str, Any]) -> float:
            if not finite(r.get("dense_metric")) or not finite(r.get("metric")):
                return 1.0
            dense, metric = float(r["dense_metric"]), float(r["metric"])
            return (dense - margin) - metric if maximize else metric - (dense + margin)

        cons.append(metric_vs_dense)
    return cons


def mark_feasible(records: list[TrialRecord], constraints: list[Constraint]) -> None:
    """A trial is feasible when it completed and meets every search-level constraint; infeasible
    trials never enter the Pareto set, so they are never registered."""
    for r in records:
        r.feasible = r.status == "complete" and all(c(r.metrics) <= 0 for c in constraints)
        own = r.metrics.get("infeasible_reason")
        if r.status == "complete" and not r.feasible and own and not r.reason:
            r.reason = f"its own ceiling: {own}"


def chance_of(facts: RunFacts, records: list[TrialRecord]) -> float:
    """The chance level of the search's metric, with the label count and vocabulary the trials loaded."""
    labels = next((r.metrics["num_labels"] for r in records if finite(r.metrics.get("num_labels"))), None)
    vocab = next((r.metrics["vocab_size"] for r in records if finite(r.metrics.get("vocab_size"))), None)
    return facts.chance(
        num_labels=int(labels) if labels else None,
        vocab_size=int(vocab) if vocab else None,
    )


def summarise(
    run_dir: Path,
    records: list[TrialRecord],
    *,
    metric_name: str,
    maximize: bool,
    chance: float,
    cost: str = "effective_gflops",
) -> tuple[list[dict[str, Any]], float, tuple[float, float], list[tuple[int, float]]]:
    """Compute the Pareto set (metric vs the report key ``cost``), hypervolume and its history from
    trial records; write the files."""
    from econ_ray.search.plot import plot_hypervolume_history, plot_pareto

    points = points_from(records, cost)
    front = pareto_front(points, maximize_metric=maximize)
    by_id = {r.trial_id: r for r in records}
    complete = [r for r in records if r.status == "complete"]
    dense_g = dense_cost(records, cost) or float("nan")
    ref = reference_point(dense_gflops=dense_g, chance_metric=chance) if math.isfinite(dense_g) else (chance, dense_g)
    hv, history = 0.0, []
    if math.isfinite(dense_g):
        hv = hypervolume(points, ref_metric=ref[0], ref_gflops=ref[1], maximize_metric=maximize)
        history = hypervolume_history(points, ref_metric=ref[0], ref_gflops=ref[1], maximize_metric=maximize)
    ranked = sorted(front, key=lambda p: (-p.metric if maximize else p.metric, p.gflops))
    rows = []
    for rank, p in enumerate(ranked, 1):
        m = by_id[p.trial_id].metrics
        rows.append(
            {
                "rank": rank,
                "trial_id": p.trial_id,
                "method": m.get("method") or m.get("objective"),
                "metric_name": metric_name,
                "metric": p.metric,
                "cost_key": cost,
                **{k: m.get(k) for k in _REPORTED},
            }
        )
    write_pareto(run_dir, rows, ref, hv)
    with open(run_dir / "pareto.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(PARETO_FIELDS))
        w.writeheader()
        w.writerows(rows)
    with open(run_dir / "hypervolume.csv", "w", newline="") as f:
        w2 = csv.writer(f)
        w2.writerow(["trials_completed", "hypervolume"])
        w2.writerows(history)
    dense = dense_of(records, metric_name)
    dense_pt = None
    if dense:
        dense_x = 1.0 if cost == "attention_density" else float(dense["dense_total_gflops"])
        dense_pt = TrialPoint("dense", dense["metric"], dense_x)
    seq_len = next((int(r.metrics["seq_len"]) for r in complete if finite(r.metrics.get("seq_len"))), 0)
    plot_pareto(
        points,
        front,
        run_dir / "pareto.png",
        metric_name=metric_name,
        seq_len=seq_len,
        dense=dense_pt,
        maximize_metric=maximize,
        cost_label=cost_label(cost),
        per_sequence=cost != "attention_density",
    )
    plot_hypervolume_history(history, run_dir / "hypervolume.png")
    return rows, hv, ref, history


def write_pareto(run_dir: Path, rows: list[dict[str, Any]], ref: tuple[float, float], hv: float) -> None:
    (run_dir / "pareto.json").write_text(
        json.dumps({"reference_point": ref, "hypervolume": hv, "pareto": rows}, indent=2)
    )


def model_dir(checkpoint: str | None) -> str:
    """The local folder of a trial's final checkpoint (the saved model), downloaded if remote."""
    if not checkpoint:
        raise SearchError("a Pareto trial has no checkpoint to register")
    from ray.train import Checkpoint

    ck = Checkpoint(checkpoint)
    return str(ck.path) if os.path.isdir(ck.path) else str(ck.to_directory())


def register_pareto(
    tracker: Any,
    cfg: SearchSpaceFile,
    rows: list[dict[str, Any]],
    records: list[TrialRecord],
    *,
    name: str,
    parent_run_id: str | None,
    maximize: bool,
    chance: float | None = None,
) -> None:
    """Register every Pareto model under ``name``, alias by rank, and set ``row["version"]``.

    The tags hold the trial's knobs read from its own run config (``space.trial_config``, the
    object the trial trained and its MLflow params were logged from) and its final metrics. An
    existing version of the trial's child run is reused (a resumed search registers nothing twice);
    the version is None while the registration waits in the tracking outbox."""
    by_id = {r.trial_id: r for r in records}
    for row in rows:
        rec = by_id[row["trial_id"]]
        knobs = trial_params(trial_config(cfg, rec.knobs))
        tags = {
            **{k: row.get(k) for k in REGISTRY_METRIC_TAGS},
            **{k: knobs[k] for k in ("lam", "alpha", "beta", "tau", "objective")},
            "parent_run_id": parent_run_id,
            "higher_is_better": str(maximize).lower(),
            "chance_metric": chance,  # `registry best` passes over versions at or below it
            "trial_id": rec.trial_id,
        }
        if tags["tau"] is None:  # a relative ceiling: the absolute tau the trial trained under
            tags["tau"] = rec.metrics.get("tau")
        row["version"] = tracker.register(
            trial_id=rec.trial_id,
            model_dir=model_dir(rec.checkpoint),
            name=name,
            tags=tags,
            alias=f"rank-{row['rank']}",
        )
