"""The search driver: Ray Tune + the constrained Optuna searcher over trials on Ray Train + DeepSpeed,
MLflow tracking from this one process, the Pareto set, and registration of the Pareto models.

``run_search`` reads as its five steps: :func:`plan` (the effective settings and the run folder, or
a resumed folder's state), the pre-flight (``econ_ray.search.preflight``, run once: the metric and
its direction come from there), the cluster, :func:`fit` (the Tuner), and :func:`finish`
(``econ_ray.search.results``: feasibility, the Pareto set, the files, the registry).

Run folder (everything needed to rebuild the results)::

    config.yaml     the file as resolved (with CLI overrides)
    trials.json     every trial: knobs, final metrics, status, failure reason, checkpoint path
    trials.csv      the same as a table
    pareto.json / pareto.csv, hypervolume.csv, pareto.png, hypervolume.png, summary.json
    optuna.db       the Optuna study (``optuna-dashboard sqlite:///RUN_DIR/optuna.db``)
    tune/           Ray Tune's experiment folder (and the trials' Ray Train folders, checkpoints)
    search_state.json, trial_records/   what a resumed search goes on from (``econ_ray.search.resume``)
    tracking_outbox/  MLflow operations kept during a tracking outage (``econ-ray sync RUN_DIR``)
    ray_output.log  what Ray, Tune and their processes printed (``econ_ray.search.progress``)
    dense/          the dense model every trial starts from (``search.dense_start: shared``)
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from econ_ray.config.schema import DistributedConfig, SearchSpaceFile
from econ_ray.search import resume as rs
from econ_ray.search.interrupt import SearchInterrupted, signals_interrupt
from econ_ray.search.preflight import SearchFacts, check_search
from econ_ray.search.records import (
    TrialRecord,
    cost_key,
    dense_of,
    load_records,
    numeric_metrics,
    write_trials,
)
from econ_ray.search.results import (
    PARENT_ARTIFACTS,
    chance_of,
    make_constraints,
    mark_feasible,
    register_pareto,
    summarise,
    write_pareto,
)
from econ_ray.tracking.store import source_tags

log = logging.getLogger(__name__)


def entry_point(config_path: str | Path | None) -> str:
    """The command a search's runs were started by, for MLflow's ``mlflow.source.name``."""
    return f"econ-ray search {config_path}" if config_path else "econ-ray search"


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
    n_infeasible: int = 0  # complete trials outside a search-level constraint or their own ceiling
    # the dense model the trials start from: metric_name, metric, dense_total_gflops (and, for a shared dense
    # start, ce_dense, dense_steps, train_s); None when no trial completed
    dense: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchPlan:
    """The effective settings of one search (a new one, or a resumed folder's) before anything starts."""

    file: SearchSpaceFile  # the file as given (with CLI overrides)
    cfg: SearchSpaceFile  # the same with the effective trials, concurrency and sampler
    config_path: str
    root: Path  # the run folder
    n_trials: int
    concurrency: int
    sampler: str
    seed: int
    stamp: str
    tracking_uri: str | None  # explicit or the resumed search's; None: MLFLOW_TRACKING_URI or ./mlflow.db
    resumed: bool = False  # going on with the search of an existing run folder
    state: dict[str, Any] = field(default_factory=dict)  # search_state.json (read on resume, written on start)
    prior: list[TrialRecord] = field(default_factory=list)  # trials a resumed search already has

    @property
    def registered_model(self) -> str:
        return self.cfg.search.registered_model or f"econ-ray-{self.cfg.name}"

    @property
    def remaining(self) -> int:
        return rs.remaining_trials(self.n_trials, self.prior)


def absolute_local_paths(cfg: SearchSpaceFile) -> SearchSpaceFile:
    """``cfg`` with a relative local model folder (``model.name``) and data files (``data.source``,
    ``data.validation``) made absolute: trials run in their own working directory, where a path relative
    to the caller's would not be found (and be taken for a hub name)."""

    def absolute(value: str | None) -> str | None:
        if not value or Path(value).is_absolute() or not Path(value).exists():
            return value
        return str(Path(value).resolve())

    model = cfg.model.model_copy(update={"name": absolute(cfg.model.name)})
    data = cfg.data.model_copy(
        update={"source": absolute(cfg.data.source), "validation": absolute(cfg.data.validation)}
    )
    return cfg.model_copy(update={"model": model, "data": data})


def plan(
    cfg: SearchSpaceFile,
    *,
    config_path: str,
    trials: int | None = None,
    concurrency: int | None = None,
    sampler: str | None = None,
    seed: int = 0,
    run_dir: str | None = None,
    tracking_uri: str | None = None,
    resume: str | None = None,
) -> SearchPlan:
    """The effective settings: the CLI's, else a resumed folder's, else the file's. Writes nothing."""
    cfg = absolute_local_paths(cfg)
    s = cfg.search
    if resume:
        root = Path(resume).resolve()
        state = rs.read_state(root)
        prior = load_records(root)
        n_trials, conc = trials or int(state["n_trials"]), concurrency or int(state["concurrency"])
        sampler_name, seed, stamp = state["sampler"], int(state["seed"]), state["stamp"]
        uri = tracking_uri or state.get("tracking_uri")
    else:
        state, prior = {}, []
        n_trials, conc, sampler_name = trials or s.trials, concurrency or s.concurrency, sampler or s.sampler
        uri, stamp = tracking_uri, time.strftime("%Y%m%d-%H%M%S")
        root = Path(run_dir) if run_dir else Path(os.environ.get("ECON_RAY_RUN_ROOT", "runs")) / f"{cfg.name}-{stamp}"
        root = root.resolve()
    search = s.model_copy(update={"trials": n_trials, "concurrency": conc, "sampler": sampler_name})
    return SearchPlan(
        file=cfg,
        cfg=cfg.model_copy(update={"search": search}),
        config_path=config_path,
        root=root,
        n_trials=n_trials,
        concurrency=conc,
        sampler=sampler_name,
        seed=seed,
        stamp=stamp,
        tracking_uri=uri,
        resumed=bool(resume),
        state=state,
        prior=prior,
    )


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
    show: str = "auto",
) -> SearchOutcome:
    """Run the whole search and return its outcome (also written to the run folder). With
    ``resume=RUN_DIR`` go on with the search of that folder (``econ_ray.search.resume``).

    ``show``: ``auto`` (a live panel on a terminal, else one line per finished trial; what Ray and
    its processes print goes to ``RUN_DIR/ray_output.log``), ``lines`` (one line per trial, Ray's
    output in the file), ``verbose`` (one line per trial, Ray's own output where Ray sends it), or
    ``none`` (nothing shown, Ray's output in the file).

    A bad input raises :class:`~econ_ray.config.load.ConfigError` from the pre-flight, before the
    run folder, Ray or MLflow exist."""
    p = plan(
        cfg,
        config_path=config_path,
        trials=trials,
        concurrency=concurrency,
        sampler=sampler,
        seed=seed,
        run_dir=run_dir,
        tracking_uri=tracking_uri,
        resume=resume,
    )
    facts = check_search(
        p.cfg, config_path, address=address, run_dir=str(p.root), storage_path=storage_path, tracking_uri=p.tracking_uri
    )
    from econ_ray.search.progress import quiet_ray_output  # imports Ray

    timing: dict[str, float] = {"t_search_start": time.time()}
    with signals_interrupt() as guard:
        session = open_session(p, facts)
        try:
            with quiet_ray_output(p.root, verbose=show == "verbose") as user:
                started = start_ray(address, p.cfg) if p.remaining else False  # a finished search resumed: no cluster
                guard.rearm()  # after ray.init's own SIGTERM handlers
                try:
                    timing["t_ray_ready"] = time.time()
                    dense = start_dense(p, session, user if show != "none" else None)
                    timing["t_dense_ready"] = time.time()
                    shown = None if show == "none" else (user, None if show == "auto" else False)
                    records = p.prior + fit(p, facts, session, storage_path=storage_path, timing=timing, shown=shown)
                finally:
                    if started:  # inside the redirection: what Ray's processes say while stopping stays in the file
                        import ray

                        ray.shutdown()
        except KeyboardInterrupt:
            exc = guard.interrupted()
            exc.run_dir = str(p.root)
            close_interrupted(session, exc)
            raise exc from None
    outcome = finish(p, facts, session, records, dense=dense)
    timing["t_search_end"] = time.time()
    (p.root / "timing.json").write_text(json.dumps(timing))  # benchmarks/machinery_overhead.py
    return outcome


def close_interrupted(session: Session, exc: SearchInterrupted) -> None:
    """A search stopped by a signal: its trials' child runs still open and the parent run end KILLED
    (what was recorded stays; ``--resume`` re-opens the parent and re-runs the cut-off trials)."""
    why = f"the search was stopped by {exc.signal_name}; econ-ray search --resume RUN_DIR goes on with it"
    tracker = session.tracker
    try:
        store = getattr(tracker, "tracker", tracker)  # the MlflowTracker behind the outbox
        for trial_id in store.running_children():
            tracker.finish_child(trial_id, status="KILLED", reason=why)
        tracker.set_parent_tag("econ_ray.interrupted", exc.signal_name)
        tracker.end_parent("KILLED")
    except Exception as err:  # noqa: BLE001 - an unreachable store must not hide the interruption
        log.warning("closing the MLflow runs of an interrupted search failed: %s", err)


@dataclass
class Session:
    """What a started search holds: the MLflow parent run and the tracker, the Optuna searcher, and
    the trials a resume re-runs."""

    tracker: Any  # BufferedTracker: MLflow, or the run folder's outbox during an outage
    parent_run_id: str
    searcher: Any  # ConstrainedOptunaSearch
    rerun: list[dict[str, Any]]


_RECORD_STATUS = {"complete": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}  # record -> MLflow run status


def open_session(p: SearchPlan, facts: SearchFacts) -> Session:
    """The run folder, the MLflow parent run (a resumed search's own), the search state and the
    Optuna study (``RUN_DIR/optuna.db``); a resume closes the trials its kill cut off."""
    from econ_ray.search.optuna_searcher import ConstrainedOptunaSearch
    from econ_ray.tracking import MlflowTracker
    from econ_ray.tracking.outbox import BufferedTracker
    from econ_ray.tracking.store import redact_uri

    cfg, s, uri = p.cfg, p.cfg.search, facts.tracking_uri
    p.root.mkdir(parents=True, exist_ok=True)
    mlflow_tracker = MlflowTracker(uri, experiment=cfg.name)
    if p.resumed:
        parent = p.state["parent_run_id"]
        mlflow_tracker.resume_parent(parent)  # the same parent run; children re-found
        p.state.update(resumes=int(p.state.get("resumes", 0)) + 1, n_trials=p.n_trials)
    else:
        # the file as given: the effective trials, concurrency and sampler are in the state and parent params
        (p.root / "config.yaml").write_text(yaml.safe_dump(p.file.model_dump(mode="json"), sort_keys=False))
        parent = mlflow_tracker.start_parent(
            f"search-{p.stamp}",
            params={
                "trials": p.n_trials,
                "concurrency": p.concurrency,
                "sampler": p.sampler,
                "seed": p.seed,
                "config_file": p.config_path,
                "space": json.dumps(s.space.model_dump(exclude_none=True)),
                "workers_per_trial": cfg.distributed.workers,
                "deepspeed": cfg.distributed.deepspeed,
                "zero_stage": cfg.distributed.zero_stage,
                "model": cfg.model.name,
                "data": cfg.data.source,
                "task_kind": facts.task.kind,
                "metric": facts.metric_name,
                "attention": cfg.attention.mode,
                "registered_model": p.registered_model,
                "scheduler": s.scheduler.kind,
                "config_artifact": "config.yaml",  # the whole trained config, overrides included
                "config": p.file.model_dump(mode="json", exclude={"search"}),  # also as config.* params
            },
            tags={"run_dir": str(p.root), "econ_ray.kind": "search", **source_tags(entry_point(p.config_path))},
        )
        p.state.update(
            n_trials=p.n_trials,
            concurrency=p.concurrency,
            sampler=p.sampler,
            seed=p.seed,
            stamp=p.stamp,
            parent_run_id=parent,
            experiment=cfg.name,
            registered_model=p.registered_model,
            tracking_uri=uri if redact_uri(uri) == uri else None,
            config_file=p.config_path,
            resumes=0,
        )
    rs.write_state(p.root, p.state)
    tracker = BufferedTracker(mlflow_tracker, p.root)  # an outage from here on fills RUN_DIR/tracking_outbox
    searcher = ConstrainedOptunaSearch(
        s.space,
        sampler=p.sampler,
        seed=p.seed,
        n_trials=p.n_trials,
        storage=f"sqlite:///{p.root / 'optuna.db'}",
        study_name=cfg.name,
        maximize_metric=facts.maximize,
        constraints=make_constraints(cfg, facts.maximize),
        objective_keys=("metric", cost_key(s.cost)),
        metric_names=(facts.metric_name, cost_key(s.cost)),
    )
    rerun: list[dict[str, Any]] = []
    if p.resumed:
        # Optuna trials the kill cut off: FAIL, their knobs enqueued again; their child runs KILLED
        rerun = rs.reconcile_study(searcher.study, p.prior)
        for r in rerun:
            if r["tune_trial_id"] and tracker.child_id(r["tune_trial_id"]):
                tracker.finish_child(
                    r["tune_trial_id"],
                    status="KILLED",
                    reason="the search driver was interrupted; re-run with the same knobs",
                )
        # trials recorded in the run folder whose child runs the kill left open: end them as recorded
        open_runs = set(mlflow_tracker.open_children())
        for rec in p.prior:
            if rec.trial_id in open_runs:
                tracker.finish_child(
                    rec.trial_id,
                    status=_RECORD_STATUS.get(rec.status, "KILLED"),
                    metrics=numeric_metrics(rec.metrics) if rec.status == "complete" else None,
                    reason=rec.reason,
                )
        tracker.set_parent_tag("econ_ray.resumes", p.state["resumes"])
    return Session(tracker, parent, searcher, rerun)


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


def start_ray(address: str | None, cfg: SearchSpaceFile) -> bool:
    """Connect to ``address`` / ``RAY_ADDRESS``, or start a local cluster (whose capacity the
    pre-flight checked); False when this process was already connected (the caller's Ray stays up)."""
    import ray

    if ray.is_initialized():
        return False
    env_address = os.environ.get("RAY_ADDRESS")
    if address or env_address:
        ray.init(address=address or env_address, log_to_driver=False)
    else:
        ray.init(**local_ray_options(cfg))
    return True


def start_dense(p: SearchPlan, session: Session, shown: Any) -> dict[str, Any] | None:
    """With ``search.dense_start: shared``: the dense model trained once (or found in the run folder of a
    resumed search), the trials pointed at it (``p.cfg``), its summary logged to the parent run and
    shown; None otherwise."""
    if p.cfg.search.dense_start != "shared":
        return None
    from econ_ray.search.dense_start import dense_folder, read_summary, shared_dense_start

    if not p.remaining:
        return read_summary(dense_folder(p.root))
    if shown is not None and read_summary(dense_folder(p.root)) is None:
        print(
            f"dense start: training the dense model once ({p.cfg.objective.dense_steps} steps), "
            "then every trial starts from it",
            file=shown,
            flush=True,
        )
    p.cfg, dense, trained = shared_dense_start(p.cfg, p.root)
    if trained:
        session.tracker.log_parent_metrics(
            {f"dense_{k}": float(v) for k, v in dense.items() if isinstance(v, (int, float)) and k != "metric_name"}
        )
    if shown is not None:
        print(f"dense model: {dense_line(dense)} ({dense_folder(p.root)})", file=shown, flush=True)
    return dense


def dense_line(dense: dict[str, Any]) -> str:
    """``pearson 0.9327, at 0.0195 GFLOPs (1200 steps in 41 s)``; the parts a summary lacks are left out."""
    text = f"{dense.get('metric_name', 'metric')} {float(dense['metric']):.4g}"
    if dense.get("dense_total_gflops") is not None:
        text += f", at {float(dense['dense_total_gflops']):.4g} GFLOPs"
    if dense.get("train_s") is not None:
        text += f" ({dense.get('dense_steps')} steps in {float(dense['train_s']):.0f} s)"
    return text


def fit(
    p: SearchPlan,
    facts: SearchFacts,
    session: Session,
    *,
    storage_path: str | None,
    timing: dict[str, float],
    shown: tuple[Any, bool | None] | None = None,
) -> list[TrialRecord]:
    """Run the remaining trials on a Tuner; return their records (failed trials included: a failing
    trial never loses the others). ``shown``: (stream, live) of the progress display, or None."""
    from ray import tune

    from econ_ray.search.progress import SearchProgress
    from econ_ray.search.tracking_callback import MlflowTuneCallback
    from econ_ray.search.trial import trial_fn

    callback = MlflowTuneCallback(
        session.tracker,
        p.cfg,
        run_dir=p.root,
        order_offset=len(p.prior),
        tags=source_tags(entry_point(p.config_path)),
    )
    if not p.remaining:
        return []
    callbacks: list[Any] = [callback]
    display = None
    if shown is not None:
        constraints = make_constraints(p.cfg, facts.maximize)

        def so_far() -> list[TrialRecord]:
            recs = p.prior + callback.ended_records()  # a running trial is neither done nor stopped
            mark_feasible(recs, constraints)
            return recs

        display = SearchProgress(
            so_far,
            total=p.n_trials,
            metric_name=facts.metric_name,
            maximize=facts.maximize,
            cost=cost_key(p.cfg.search.cost),
            chance=lambda recs: chance_of(facts, recs),
            stream=shown[0],
            live=shown[1],
        )
        callbacks.append(display)  # after the tracking callback: its records include the trial just ended
    tune_storage = storage_path or os.environ.get("ECON_RAY_STORAGE_PATH") or str(p.root / "tune")
    tuner = tune.Tuner(
        # the trial function only drives a TorchTrainer: no CPU of its own (its workers reserve theirs)
        tune.with_resources(trial_fn, trial_resources(p.cfg.distributed)),
        param_space={"file": p.cfg.model_dump(mode="json"), "train_storage": tune_storage.rstrip("/") + "/train"},
        tune_config=tune.TuneConfig(
            search_alg=session.searcher,
            scheduler=make_scheduler(p.cfg, facts.maximize),
            num_samples=p.remaining,
            max_concurrent_trials=p.concurrency,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
            # a finished trial's actor runs the next trial: one process start and
            # its imports fewer per trial (docs/benchmarks.md section 5)
            reuse_actors=True,
        ),
        # a resumed search runs a new Tune experiment next to the first (see econ_ray.search.resume)
        run_config=tune.RunConfig(
            name=f"tune-resume-{p.state['resumes']}" if p.resumed else "tune",
            storage_path=tune_storage,
            callbacks=callbacks,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=p.cfg.distributed.trial_max_failures),
        ),
    )
    timing["t_fit_start"] = time.time()
    if display is not None:
        display.start()
    try:
        tuner.fit()  # failed trials are recorded by the callback; the others go on
    finally:
        if display is not None:
            display.close()
    timing["t_fit_end"] = time.time()
    return callback.records()


# Ray's resource that only the head node has (ray._common.constants.HEAD_NODE_RESOURCE_NAME)
HEAD_NODE_RESOURCE = "node:__internal_head__"


def trial_resources(dist: DistributedConfig) -> dict[str, float]:
    """What a trial's own process reserves: no CPU (its Ray Train workers reserve theirs), a little
    memory, and, with ``distributed.trial_driver: head``, a sliver of the head node's resource, so the
    trial and the Train controller Ray attaches to its node live on the head: losing a worker node
    then costs a trial only its workers, which Ray Train restarts from the last checkpoint."""
    res: dict[str, float] = {"CPU": 0, "memory": 256 * 1024**2}
    if dist.trial_driver == "head":
        res[HEAD_NODE_RESOURCE] = 0.001
    return res


def finish(
    p: SearchPlan,
    facts: SearchFacts,
    session: Session,
    records: list[TrialRecord],
    *,
    dense: dict[str, Any] | None = None,
) -> SearchOutcome:
    """Feasibility, the run folder's files, the registry and the parent run's metrics. ``dense``: the shared
    dense start's summary; else the dense model is the trials' own (the median of their dense metrics)."""
    tracker, root = session.tracker, p.root
    mark_feasible(records, make_constraints(p.cfg, facts.maximize))
    write_trials(root, records)
    chance = chance_of(facts, records)
    rows, hv, ref, history = summarise(
        root,
        records,
        metric_name=facts.metric_name,
        maximize=facts.maximize,
        chance=chance,
        cost=cost_key(p.cfg.search.cost),
    )
    register_pareto(
        tracker,
        p.cfg,
        rows,
        records,
        name=p.registered_model,
        parent_run_id=session.parent_run_id,
        maximize=facts.maximize,
        chance=chance,
    )
    write_pareto(root, rows, ref, hv)  # again, with the registry version of each Pareto model
    for step, (n, value) in enumerate(history):
        tracker.log_parent_metrics({"hypervolume": value, "trials_completed": n}, step=step)
    failures = [
        {"trial_id": r.trial_id, "status": r.status, "reason": r.reason} for r in records if r.status != "complete"
    ]
    n_infeasible = sum(1 for r in records if r.status == "complete" and not r.feasible)
    tracker.log_parent_metrics(
        {
            "hypervolume_final": hv,
            "n_trials": len(records),
            "n_failed": len(failures),
            "n_infeasible": n_infeasible,
            "pareto_size": len(rows),
        }
    )
    outcome = SearchOutcome(
        run_dir=str(root),
        n_trials=len(records),
        n_failed=len(failures),
        hypervolume=hv,
        registered_model=p.registered_model if rows else None,
        mlflow_parent_run_id=session.parent_run_id,
        pareto=rows,
        failures=failures,
        n_infeasible=n_infeasible,
        reference_point=ref,
        plot=str(root / "pareto.png"),
        resumed=int(p.state.get("resumes", 0)),
        rerun=session.rerun,
        dense=dense or dense_of(records, facts.metric_name),
    )
    (root / "summary.json").write_text(json.dumps(outcome.to_json(), indent=2, default=str))
    tracker.log_parent_artifacts([root / n for n in PARENT_ARTIFACTS])
    tracker.end_parent("FINISHED")
    if tracker.outbox_file is not None:
        outcome.tracking_outbox, outcome.pending_tracking_ops = str(tracker.outbox_file), tracker.pending
        outcome.tracking_error = tracker.offline_reason
        (root / "summary.json").write_text(json.dumps(outcome.to_json(), indent=2, default=str))
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
        objectives=("metric", cost_key(cfg.search.cost)),
        rank=sc.rank,
        reference=(sc.reference_metric, None),
    )


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"
