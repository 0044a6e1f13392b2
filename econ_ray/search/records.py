"""Trial records: what the run folder keeps of each trial, written the moment the trial ends.

``trial_records/<trial_id>.json`` holds one :class:`TrialRecord` per finished trial (complete,
failed or stopped), written atomically by the Tune callback, so a search whose driver dies can go on
from them (``econ_ray.search.resume``). ``trials.json`` / ``trials.csv`` are the same records as
one file and one table, written at the end of a search; :func:`points_from` turns records into the
points the Pareto set and the hypervolume are computed on (``econ_ray.search.pareto``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from econ_ray.search.pareto import TrialPoint
from econ_ray.training.checkpoint import atomic_write

RECORDS_DIR = "trial_records"


@dataclass
class TrialRecord:
    """One trial as the run folder keeps it."""

    trial_id: str
    order: int  # completion order across the whole search (resumes included)
    status: str  # "complete" | "failed" | "stopped"
    knobs: dict[str, Any]  # the sampled knobs (the trial's RunConfig is ``space.trial_config(file, knobs)``)
    metrics: dict[str, Any] = field(default_factory=dict)  # the final report of a complete trial
    reason: str | None = None  # why a trial failed or stopped
    checkpoint: str | None = None  # the final checkpoint folder (the saved model) of a complete trial
    feasible: bool = True  # complete and within the search-level constraints (``results.make_constraints``)


# search.cost -> the final-report key the search minimises and the registry budgets by
COST_KEYS = {
    "static": "static_gflops",
    "effective": "effective_gflops",
    "latency": "latency_ms",
    "edges": "attention_density",  # the kept fraction of valid attention edges (gates post-training)
}


def cost_key(cost: str) -> str:
    """The report key of a ``search.cost`` (``static`` -> ``static_gflops``)."""
    try:
        return COST_KEYS[cost]
    except KeyError:
        raise ValueError(f"search.cost: expected one of {sorted(COST_KEYS)}, got {cost!r}") from None


def cost_label(key: str) -> str:
    """How a report cost key reads in a table title or on a plot's axis."""
    return "kept fraction of attention edges" if key == "attention_density" else key.replace("_gflops", " GFLOPs")


CHECKPOINT_PATH_KEY = "checkpoint_path"  # set by Ray Train's TuneReportCallback
# Tune's own bookkeeping that it adds to every report (ray.tune.result.AUTO_RESULT_KEYS and kin):
# not econ-ray's measurements, so never an MLflow metric.
TUNE_BOOKKEEPING = frozenset(
    {
        "training_iteration",
        "time_total_s",
        "time_this_iter_s",
        "time_since_restore",
        "timestamp",
        "date",
        "pid",
        "node_ip",
        "hostname",
        "episodes_total",
        "timesteps_total",
        "timesteps_since_restore",
        "iterations_since_restore",
        "done",
        "should_checkpoint",
        "checkpoint_dir_name",
        "config",
        "trial_id",
        "experiment_tag",
    }
)
_NOT_METRICS = {"final", CHECKPOINT_PATH_KEY, "step"} | TUNE_BOOKKEEPING


def numeric_metrics(d: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a trial's report (booleans, text, the checkpoint path and Tune's own
    bookkeeping left out): what its MLflow child run logs as metrics."""
    return {k: float(v) for k, v in d.items() if k not in _NOT_METRICS and not isinstance(v, bool) and finite(v)}


def finite(x: Any) -> bool:
    """A number that is neither NaN nor infinite."""
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def dense_total_gflops(records: list[TrialRecord]) -> float | None:
    """The unmodified model's whole cost, as the first complete trial reporting it counted it (the same
    count as static and effective GFLOPs with nothing removed): the hypervolume reference's cost."""
    return next(
        (
            float(r.metrics["dense_total_gflops"])
            for r in records
            if r.status == "complete" and finite(r.metrics.get("dense_total_gflops"))
        ),
        None,
    )


def dense_cost(records: list[TrialRecord], cost: str) -> float | None:
    """The unmodified model's cost in the report key ``cost``: every edge (1.0) for ``attention_density``,
    else its whole GFLOPs (:func:`dense_total_gflops`); None before a trial completed."""
    if cost == "attention_density":
        return 1.0 if any(r.status == "complete" for r in records) else None
    return dense_total_gflops(records)


def dense_of(records: list[TrialRecord], metric_name: str) -> dict[str, Any] | None:
    """The dense model the complete trials started from: the median of their dense metrics (one value when
    they share a dense start or a seed) and its whole cost; None when no complete trial reported both."""
    metrics = sorted(
        float(r.metrics["dense_metric"])
        for r in records
        if r.status == "complete" and finite(r.metrics.get("dense_metric"))
    )
    gflops = dense_total_gflops(records)
    if not metrics or gflops is None:
        return None
    return {"metric_name": metric_name, "metric": metrics[len(metrics) // 2], "dense_total_gflops": gflops}


def write_record(run_dir: str | Path, record: TrialRecord) -> None:
    """Persist one finished trial's record under ``trial_records/`` (atomically)."""
    folder = Path(run_dir) / RECORDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(record), indent=2, default=str)

    def write(p: Path) -> None:
        p.write_text(text)

    atomic_write(folder / f"{record.trial_id}.json", write)


def load_records(run_dir: str | Path) -> list[TrialRecord]:
    """Every recorded trial of the run folder, in the order they finished."""
    folder = Path(run_dir) / RECORDS_DIR
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(TrialRecord(**json.loads(p.read_text())))
        except (ValueError, TypeError):  # never a torn file (atomic writes); a foreign one is skipped
            continue
    return sorted(out, key=lambda r: r.order)


def read_trials(run_dir: str | Path) -> list[TrialRecord]:
    """The records of a finished search's ``trials.json``."""
    return [TrialRecord(**r) for r in json.loads((Path(run_dir) / "trials.json").read_text())]


def points_from(records: list[TrialRecord], cost: str = "effective_gflops") -> list[TrialPoint]:
    """(metric, cost) points of the records, the cost read from the report key ``cost``
    (:func:`cost_key`); only complete trials with both finite are eligible for the Pareto set
    (``TrialPoint.complete``)."""
    pts = []
    for r in records:
        m = r.metrics
        ok = r.status == "complete" and finite(m.get("metric")) and finite(m.get(cost))
        pts.append(
            TrialPoint(
                trial_id=r.trial_id,
                metric=float(m["metric"]) if finite(m.get("metric")) else float("nan"),
                gflops=float(m[cost]) if finite(m.get(cost)) else float("nan"),
                feasible=r.feasible,
                complete=ok,
                order=r.order,
                params={**r.knobs, **{k: m.get(k) for k in ("lam", "alpha", "beta", "tau", "objective", "method")}},
            )
        )
    return pts


def write_trials(run_dir: str | Path, records: list[TrialRecord]) -> None:
    """``trials.json`` and ``trials.csv``: every trial with its knobs, final metrics and status."""
    run_dir = Path(run_dir)
    (run_dir / "trials.json").write_text(json.dumps([asdict(r) for r in records], indent=2, default=str))
    keys = sorted({k for r in records for k in r.metrics})
    knobs = sorted({k for r in records for k in r.knobs})
    fixed = ("trial_id", "order", "status", "feasible", "reason")
    with open(run_dir / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        # a result key that repeats a fixed column (Tune's trial_id, the run's own feasible) gets a
        # prefix: one header name per column, so csv readers do not overwrite status or id
        w.writerow([*fixed, *[f"knob_{k}" for k in knobs], *[f"result_{k}" if k in fixed else k for k in keys]])
        for r in records:
            w.writerow(
                [
                    r.trial_id,
                    r.order,
                    r.status,
                    r.feasible,
                    r.reason or "",
                    *[r.knobs.get(k) for k in knobs],
                    *[r.metrics.get(k) for k in keys],
                ]
            )
