"""The search driver: Ray Tune + the constrained Optuna searcher over trials on Ray Train + DeepSpeed,
MLflow tracking from this one process, the Pareto set, and registration of the Pareto models.

Run folder (everything needed to rebuild the results)::

    config.yaml     the file as resolved (with CLI overrides)
    trials.json     every trial: knobs, final metrics, status, failure reason, checkpoint path
    trials.csv      the same as a table
    pareto.json / pareto.csv, hypervolume.csv, pareto.png, hypervolume.png, summary.json
    optuna.db       the Optuna study (``optuna-dashboard sqlite:///RUN_DIR/optuna.db``)
    tune/           Ray Tune's experiment folder (and the trials' Ray Train folders, checkpoints)
    search_state.json, trial_records/   what a resumed search goes on from (``econ_ray.search.resume``)
    tracking_outbox/  MLflow operations kept during a tracking outage (``econ-ray sync RUN_DIR``)
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from econ_ray.config.schema import SearchSpaceFile
from econ_ray.metrics.task import higher_is_better
from econ_ray.search.pareto import (
    TrialPoint,
    chance_metric,
    hypervolume,
    hypervolume_history,
    pareto_front,
    reference_point,
)

PARETO_FIELDS = (
    "rank",
    "trial_id",
    "metric_name",
    "metric",
    "effective_gflops",
    "dense_total_gflops",
    "dense_gflops",
    "seq_len",
    "lam",
    "alpha",
    "beta",
    "tau",
    "objective",
    "attention_density",
    "ffn_density",
    "ce",
)


class SearchError(RuntimeError):
    """A search that cannot start (bad cluster size, storage, tracking)."""


@dataclass
class TrialRecord:
    """One trial as the run folder keeps it."""

    trial_id: str
    order: int
    status: str  # "complete" | "failed" | "stopped"
    knobs: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    checkpoint: str | None = None
    feasible: bool = True


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def make_constraints(cfg: SearchSpaceFile, maximize: bool) -> list:
    """Search-level constraints in Optuna's convention (feasible iff value <= 0)."""
    cons = []
    pts = cfg.search.min_metric_vs_dense
    if pts is not None:
        margin = pts / 100.0  # "points" of a metric reported as a fraction

        def metric_vs_dense(r: dict[str, Any]) -> float:
            dense = r.get("dense_metric")
            if not _finite(dense) or not _finite(r.get("metric")):
                return 1.0
            return (dense - margin) - r["metric"] if maximize else r["metric"] - (dense + margin)

        cons.append(metric_vs_dense)
    return cons


def points_from(records: list[TrialRecord]) -> list[TrialPoint]:
    pts = []
    for r in records:
        m = r.metrics
        ok = r.status == "complete" and _finite(m.get("metric")) and _finite(m.get("effective_gflops"))
        pts.append(
            TrialPoint(
                trial_id=r.trial_id,
                metric=float(m["metric"]) if _finite(m.get("metric")) else float("nan"),
                gflops=float(m["effective_gflops"]) if _finite(m.get("effective_gflops")) else float("nan"),
                feasible=r.feasible,
                complete=ok,
                order=r.order,
                params={**r.knobs, **{k: m.get(k) for k in ("lam", "alpha", "beta", "tau", "objective")}},
            )
        )
    return pts


@dataclass
class SearchOutcome:
    run_dir: str
    n_trials: int
    n_failed: int
    hypervolume: float
    registered_model: str | None
    mlflow_parent_run_id: str | None
    pareto: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    reference_point: tuple[float, float]
    plot: str
    resumed: int = 0  # how many times this run folder's search was resumed
    rerun: list[dict[str, Any]] = field(default_factory=list)  # trials cut off by a kill, re-run
    tracking_outbox: str | None = None  # operations the tracking store did not take, kept on disk
    pending_tracking_ops: int = 0
    tracking_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    run_dir: Path, records: list[TrialRecord], *, metric_name: str, maximize: bool, chance: float
) -> tuple[list[dict[str, Any]], float, tuple[float, float], list[tuple[int, float]]]:
    """Compute the Pareto set, hypervolume and its history from trial records; write the files."""
    from econ_ray.search.plot import plot_hypervolume_history, plot_pareto

    points = points_from(records)
    front = pareto_front(points, maximize_metric=maximize)
    by_id = {r.trial_id: r for r in records}
    complete = [r for r in records if r.status == "complete"]
    # the unmodified model's whole cost: the same count as effective_gflops with nothing skipped
    dense_g = next(
        (float(r.metrics["dense_total_gflops"]) for r in complete if _finite(r.metrics.get("dense_total_gflops"))),
        float("nan"),
    )
    ref = reference_point(dense_gflops=dense_g, chance_metric=chance)
    hv = (
        hypervolume(points, ref_metric=ref[0], ref_gflops=ref[1], maximize_metric=maximize)
        if math.isfinite(dense_g)
        else 0.0
    )
    history = (
        hypervolume_history(points, ref_metric=ref[0], ref_gflops=ref[1], maximize_metric=maximize)
        if math.isfinite(dense_g)
        else []
    )
    ranked = sorted(front, key=lambda p: (-p.metric if maximize else p.metric, p.gflops))
    rows = []
    for rank, p in enumerate(ranked, 1):
        m = by_id[p.trial_id].metrics
        rows.append(
            {
                "rank": rank,
                "trial_id": p.trial_id,
                "metric_name": metric_name,
                "metric": p.metric,
                "effective_gflops": p.gflops,
                **{
                    k: m.get(k)
                    for k in PARETO_FIELDS
                    if k not in ("rank", "trial_id", "metric_name", "metric", "effective_gflops")
                },
            }
        )
    (run_dir / "pareto.json").write_text(
        json.dumps({"reference_point": ref, "hypervolume": hv, "pareto": rows}, indent=2)
    )
    with open(run_dir / "pareto.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(PARETO_FIELDS))
        w.writeheader()
        w.writerows(rows)
    with open(run_dir / "hypervolume.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trials_completed", "hypervolume"])
        w.writerows(history)
    dense_metrics = [float(r.metrics["dense_metric"]) for r in complete if _finite(r.metrics.get("dense_metric"))]
    dense_pt = None
    if dense_metrics and math.isfinite(dense_g):
        dense_pt = TrialPoint("dense", sorted(dense_metrics)[len(dense_metrics) // 2], dense_g)
    seq_len = next((int(r.metrics["seq_len"]) for r in complete if _finite(r.metrics.get("seq_len"))), 0)
    plot_pareto(
        points,
        front,
        run_dir / "pareto.png",
        metric_name=metric_name,
        seq_len=seq_len,
        dense=dense_pt,
        maximize_metric=maximize,
    )
    plot_hypervolume_history(history, run_dir / "hypervolume.png")
    return rows, hv, ref, history


def write_trials(run_dir: Path, records: list[TrialRecord]) -> None:
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


def local_ray_options(cfg: SearchSpaceFile) -> dict[str, Any]:
    """``ray.init`` options of a new local cluster: all cores; the dashboard and job server only
    when asked for (``distributed.dashboard``), listening on ``distributed.dashboard_host``
    (127.0.0.1 unless the user says otherwise). Ray 2.60's GCS, raylet and worker gRPC ports
    listen on all interfaces whatever ``ray.init`` is given (measured: docs/reliability.md); run
    on a trusted network or behind a firewall."""
    d = cfg.distributed
    return {
        "address": "local",
        "num_cpus": os.cpu_count(),
        "include_dashboard": d.dashboard,
        "dashboard_host": d.dashboard_host,
        "log_to_driver": False,
    }


def _start_ray(address: str | None, cfg: SearchSpaceFile, concurrency: int) -> None:
    """Connect to ``address`` / ``RAY_ADDRESS``, or start a local cluster. The local cluster's
    capacity was checked by the pre-flight (``check_search``) before this is called."""
    import ray

    if ray.is_initialized():
        return
    env_address = os.environ.get("RAY_ADDRESS")
    if address or env_address:
        ray.init(address=address or env_address, log_to_driver=False)
    else:
        ray.init(**local_ray_options(cfg))


def run_search(
    cfg: SearchSpaceFile,
    *,
    config_path: str,
    trials: int | None = None,
    concurrency: int | None = None,
    sampler: str | None = None,
    seed: int = 0,
    address: str | None = None,
    run_dir: str | None = None,
    storage_path: str | None = None,
    tracking_uri: str | None = None,
    resume: str | None = None,
) -> SearchOutcome:
    """Run the whole search and return its outcome (also written to the run folder). With
    ``resume=RUN_DIR`` go on with the search of that folder (``econ_ray.search.resume``)."""
    from ray import tune

    from econ_ray.config.checks import check_search
    from econ_ray.search import resume as rs
    from econ_ray.search.optuna_searcher import ConstrainedOptunaSearch
    from econ_ray.search.tracking_callback import MlflowTuneCallback
    from econ_ray.search.trial import trial_fn
    from econ_ray.tracking import MlflowTracker, check_tracking_uri
    from econ_ray.tracking import tracking_uri as resolve_uri
    from econ_ray.tracking.outbox import BufferedTracker
    from econ_ray.tracking.store import redact_uri

    s = cfg.search
    state: dict[str, Any] = {}
    prior: list[TrialRecord] = []
    if resume:
        root = Path(resume).resolve()
        state = rs.read_state(root)
        prior = rs.load_records(root)
        sampler_name, seed = state["sampler"], int(state["seed"])
        n_trials = trials or int(state["n_trials"])
        conc = concurrency or int(state["concurrency"])
        uri = resolve_uri(tracking_uri or state.get("tracking_uri"))
        stamp = state["stamp"]
    else:
        n_trials = trials or s.trials
        conc = concurrency or s.concurrency
        sampler_name = sampler or s.sampler
        uri = resolve_uri(tracking_uri)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        root = Path(run_dir) if run_dir else Path(os.environ.get("ECON_RAY_RUN_ROOT", "runs")) / f"{cfg.name}-{stamp}"
        root = root.resolve()
    # pre-flight with the effective trials / concurrency / sampler: a bad input raises ConfigError
    # here, before the run folder, Ray or MLflow exist
    effective = cfg.model_copy(
        update={"search": s.model_copy(update={"trials": n_trials, "concurrency": conc, "sampler": sampler_name})}
    )
    check_search(
        effective, config_path, address=address, run_dir=str(root), storage_path=storage_path, tracking_uri=uri
    )
    check_tracking_uri(uri)
    root.mkdir(parents=True, exist_ok=True)
    if not resume:
        (root / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    timing: dict[str, float] = {"t_search_start": time.time()}
    if rs.remaining_trials(n_trials, prior):  # a finished search resumed again needs no cluster
        _start_ray(address, cfg, conc)
    timing["t_ray_ready"] = time.time()
    metric_name = _metric_name(cfg)
    maximize = higher_is_better(metric_name)
    mlflow_tracker = MlflowTracker(uri, experiment=cfg.name)
    registered = s.registered_model or f"econ-ray-{cfg.name}"
    if resume:
        mlflow_tracker.resume_parent(state["parent_run_id"])  # the same parent run; children re-found
        parent = state["parent_run_id"]
        state["resumes"] = int(state.get("resumes", 0)) + 1
        state["n_trials"] = n_trials
        rs.write_state(root, state)
    else:
        parent = mlflow_tracker.start_parent(
            f"search-{stamp}",
            params={
                "trials": n_trials,
                "concurrency": conc,
                "sampler": sampler_name,
                "seed": seed,
                "config_file": config_path,
                "space": json.dumps(s.space.model_dump(exclude_none=True)),
                "workers_per_trial": cfg.distributed.workers,
                "deepspeed": cfg.distributed.deepspeed,
                "zero_stage": cfg.distributed.zero_stage,
                "model": cfg.model.name,
                "data": cfg.data.source,
                "attention": cfg.attention.mode,
                "registered_model": registered,
                "scheduler": s.scheduler.kind,
            },
            tags={"run_dir": str(root), "econ_ray.kind": "search"},
        )
        state = {
            "n_trials": n_trials,
            "concurrency": conc,
            "sampler": sampler_name,
            "seed": seed,
            "stamp": stamp,
            "parent_run_id": parent,
            "experiment": cfg.name,
            "registered_model": registered,
            "tracking_uri": uri if redact_uri(uri) == uri else None,
            "config_file": config_path,
            "resumes": 0,
        }
        rs.write_state(root, state)
    tracker = BufferedTracker(mlflow_tracker, root)  # an outage from here on fills RUN_DIR/tracking_outbox
    searcher = ConstrainedOptunaSearch(
        s.space,
        sampler=sampler_name,
        seed=seed,
        n_trials=n_trials,
        storage=f"sqlite:///{root / 'optuna.db'}",
        study_name=cfg.name,
        maximize_metric=maximize,
        constraints=make_constraints(cfg, maximize),
    )
    rerun: list[dict[str, Any]] = []
    if resume:
        # Optuna trials the kill cut off: FAIL, their knobs enqueued again; their child runs KILLED
        rerun = rs.reconcile_study(searcher.study, prior)
        for r in rerun:
            if r["tune_trial_id"] and tracker.child_id(r["tune_trial_id"]):
                tracker.finish_child(
                    r["tune_trial_id"],
                    status="KILLED",
                    reason="the search driver was interrupted; re-run with the same knobs",
                )
        tracker.set_parent_tag("econ_ray.resumes", state["resumes"])
    callback = MlflowTuneCallback(tracker, run_dir=root, order_offset=len(prior))
    remaining = rs.remaining_trials(n_trials, prior)
    if remaining:
        tune_storage = storage_path or os.environ.get("ECON_RAY_STORAGE_PATH") or str(root / "tune")
        tuner = tune.Tuner(
            # the trial function only drives a TorchTrainer: no CPU of its own (its workers reserve theirs)
            tune.with_resources(trial_fn, {"CPU": 0, "memory": 256 * 1024**2}),
            param_space={"file": cfg.model_dump(mode="json"), "train_storage": tune_storage.rstrip("/") + "/train"},
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=make_scheduler(cfg, maximize),
                num_samples=remaining,
                max_concurrent_trials=conc,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
                # a finished trial's actor runs the next trial: one process start and
                # its imports fewer per trial (docs/benchmarks.md section 5)
                reuse_actors=True,
            ),
            # a resumed search runs a new Tune experiment next to the first (see econ_ray.search.resume)
            run_config=tune.RunConfig(
                name=f"tune-resume-{state['resumes']}" if resume else "tune",
                storage_path=tune_storage,
                callbacks=[callback],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        timing["t_fit_start"] = time.time()
        tuner.fit()  # failed trials are recorded by the callback; the others go on
        timing["t_fit_end"] = time.time()

    records = prior + callback.records()
    constraints = make_constraints(cfg, maximize)
    for r in records:
        r.feasible = r.status == "complete" and all(c(r.metrics) <= 0 for c in constraints)
    write_trials(root, records)
    chance = _chance(cfg, metric_name, records)
    rows, hv, ref, history = summarise(root, records, metric_name=metric_name, maximize=maximize, chance=chance)

    # register every Pareto model, alias by rank
    for row in rows:
        rec = next(r for r in records if r.trial_id == row["trial_id"])
        tags = {
            **{
                k: row.get(k)
                for k in (
                    "metric",
                    "metric_name",
                    "effective_gflops",
                    "dense_gflops",
                    "dense_total_gflops",
                    "seq_len",
                    "lam",
                    "alpha",
                    "beta",
                    "tau",
                    "objective",
                )
            },
            "parent_run_id": parent,
            "higher_is_better": str(maximize).lower(),
            "trial_id": rec.trial_id,
        }
        # an existing version of the trial's child run is reused (a resumed search registers nothing twice);
        # None while the registration waits in the tracking outbox
        row["version"] = tracker.register(
            trial_id=rec.trial_id,
            model_dir=_model_dir(rec.checkpoint),
            name=registered,
            tags=tags,
            alias=f"rank-{row['rank']}",
        )
    # rewritten with the registry version of each Pareto model
    (root / "pareto.json").write_text(json.dumps({"reference_point": ref, "hypervolume": hv, "pareto": rows}, indent=2))
    for step, (n, value) in enumerate(history):
        tracker.log_parent_metrics({"hypervolume": value, "trials_completed": n}, step=step)
    failures = [
        {"trial_id": r.trial_id, "status": r.status, "reason": r.reason} for r in records if r.status != "complete"
    ]
    tracker.log_parent_metrics(
        {"hypervolume_final": hv, "n_trials": len(records), "n_failed": len(failures), "pareto_size": len(rows)}
    )
    outcome = SearchOutcome(
        run_dir=str(root),
        n_trials=len(records),
        n_failed=len(failures),
        hypervolume=hv,
        registered_model=registered if rows else None,
        mlflow_parent_run_id=parent,
        pareto=rows,
        failures=failures,
        reference_point=ref,
        plot=str(root / "pareto.png"),
        resumed=int(state.get("resumes", 0)),
        rerun=rerun,
    )
    (root / "summary.json").write_text(json.dumps(outcome.to_json(), indent=2, default=str))
    tracker.log_parent_artifacts(
        [
            root / n
            for n in (
                "pareto.csv",
                "pareto.json",
                "pareto.png",
                "hypervolume.csv",
                "hypervolume.png",
                "trials.csv",
                "summary.json",
                "config.yaml",
            )
        ]
    )
    tracker.end_parent("FINISHED")
    if tracker.outbox_file is not None:
        outcome.tracking_outbox, outcome.pending_tracking_ops = str(tracker.outbox_file), tracker.pending
        outcome.tracking_error = tracker.offline_reason
        (root / "summary.json").write_text(json.dumps(outcome.to_json(), indent=2, default=str))
    timing["t_search_end"] = time.time()
    (root / "timing.json").write_text(json.dumps(timing))  # benchmarks/machinery_overhead.py
    return outcome


def make_scheduler(cfg: SearchSpaceFile, maximize: bool) -> Any:
    """The Tune trial scheduler of ``search.scheduler``: FIFO (none) or multi-objective ASHA."""
    from ray.tune.schedulers import FIFOScheduler

    sc = cfg.search.scheduler
    if sc.kind == "fifo":
        return FIFOScheduler()
    from econ_ray.search.moasha import MOASHAScheduler

    return MOASHAScheduler(
        grace_period=sc.grace_period,
        reduction_factor=sc.reduction_factor,
        max_t=sc.max_t,
        time_attr=sc.time_attr,
        maximize=(maximize, False),
        rank=sc.rank,
        reference=(sc.reference_metric, None),
    )


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _model_dir(checkpoint: str | None) -> str:
    if not checkpoint:
        raise SearchError("a Pareto trial has no checkpoint to register")
    from ray.train import Checkpoint

    ck = Checkpoint(checkpoint)
    return ck.path if os.path.isdir(ck.path) else ck.to_directory()


def _metric_name(cfg: SearchSpaceFile) -> str:
    src = cfg.data.source
    from econ_ray.data.builtin import BUILTIN_TASKS
    from econ_ray.data.sources import HUB_TASKS

    if src.startswith("builtin:") and src.split(":", 1)[1] in BUILTIN_TASKS:
        return BUILTIN_TASKS[src.split(":", 1)[1]].metric_name
    if src in HUB_TASKS:
        return HUB_TASKS[src].metric_name
    kind = cfg.data.kind
    return {"lm": "perplexity", "regression": "pearson"}.get(kind or "", "accuracy")


def _chance(cfg: SearchSpaceFile, metric_name: str, records: list[TrialRecord]) -> float:
    if metric_name == "accuracy":
        labels = next((r.metrics.get("num_labels") for r in records if _finite(r.metrics.get("num_labels"))), 2)
        return chance_metric("accuracy", num_labels=int(labels))
    if metric_name == "perplexity":
        vocab = next((r.metrics.get("vocab_size") for r in records if _finite(r.metrics.get("vocab_size"))), None)
        return chance_metric("perplexity", vocab_size=int(vocab) if vocab else 50257)
    return chance_metric(metric_name)
