"""Pre-flight: everything that can be checked about a run or a search before any work starts, run
once, returning what it learned.

``load_config`` checks the file against the schema (types, ranges, combinations). These checks go
further, still without training, starting Ray or writing anything: that the data source exists and
has the configured columns, that the model can be built for the task, that the search space gives
something to search, that the local cluster can hold the asked-for concurrency, that the run
folder and Tune storage can be written and that the tracking store answers.

What they learn on the way is returned, not thrown away: :class:`RunFacts` has the task spec the
data layer resolves (kind, metric, its direction, its chance level); :class:`SearchFacts` adds the
cluster capacity and the tracking URI. The search takes its metric and direction from there, never
from a guess.

Every failure is a :class:`~econ_ray.config.load.ConfigError`: one line naming the config file,
the field (a dotted config path, a CLI flag or an environment variable) and what was expected.
Nothing here creates a file, a folder, a Ray session or an MLflow run.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from econ_ray.config.load import ConfigError
from econ_ray.config.schema import RunConfig, SearchSpaceFile
from econ_ray.data import DataError, TaskSpec, describe_source
from econ_ray.metrics.task import higher_is_better
from econ_ray.modeling import ModelError, check_model
from econ_ray.search.pareto import chance_metric

RUN_ROOT_ENV = "ECON_RAY_RUN_ROOT"
STORAGE_ENV = "ECON_RAY_STORAGE_PATH"
GPT2_VOCAB = 50257  # the chance perplexity of an LM whose trials report no vocabulary size


@dataclass(frozen=True)
class RunFacts:
    """What the pre-flight of one run learned: the task as the data layer will load it."""

    task: TaskSpec

    @property
    def metric_name(self) -> str:
        return self.task.metric_name

    @property
    def maximize(self) -> bool:
        """Whether a larger metric is better (accuracy, Pearson, MCC) or a smaller one (perplexity)."""
        return higher_is_better(self.task.metric_name)

    def chance(self, *, num_labels: int | None = None, vocab_size: int | None = None) -> float:
        """The metric of a predictor that knows nothing (the hypervolume's reference). The task's
        label count unless a trial reported the loaded one; perplexity needs the vocabulary the
        trials report (a word-level tokenizer's is known only once the data is read)."""
        if self.metric_name == "accuracy":
            return chance_metric("accuracy", num_labels=num_labels or self.task.num_labels or 2)
        if self.metric_name == "perplexity":
            return chance_metric("perplexity", vocab_size=vocab_size or GPT2_VOCAB)
        return chance_metric(self.metric_name)


@dataclass(frozen=True)
class SearchFacts(RunFacts):
    """What the pre-flight of a search learned: the run's facts, the cluster and the tracking store."""

    capacity: tuple[float, float] | None = None  # (CPUs, GPUs) of a new local cluster; None: an existing one
    tracking_uri: str = ""  # the tracking store that answered


def check_run(cfg: RunConfig, path: str | Path, *, loads_here: bool = True) -> RunFacts:
    """Data and model of one run; returns the task spec the data layer resolves. ``loads_here``: this
    machine will load the model (train; a search on a local cluster), so a hub model must be reachable
    or cached here; False for ``validate`` and a search on an existing cluster."""
    d = cfg.data
    try:
        task = describe_source(
            d.source, columns=d.columns, kind=d.kind, builtin_options=d.builtin, validation=d.validation
        )
    except DataError as exc:
        field = "data.builtin" if exc.message.startswith("data.builtin: ") else exc.field
        raise ConfigError(path, field, f"{exc.source!r}: {exc.message.removeprefix('data.builtin: ')}") from None
    try:
        check_model(cfg.model, task.kind, need_files=loads_here)
    except ModelError as exc:
        if (
            task.kind == "lm"
            and d.kind is None
            and not d.source.startswith("builtin:")
            and not d.source.endswith(".txt")
        ):
            # a table without its label column reads as a corpus; name the column, not the model
            try:
                describe_source(d.source, columns=d.columns, kind="classification", builtin_options=d.builtin)
            except DataError as missing:
                raise ConfigError(
                    path,
                    "data.columns.label" if d.columns and "label" in d.columns else "data.source",
                    f"{d.source!r}: {missing.message}; without labels the file reads as a language-"
                    f"modelling corpus, which model.name '{cfg.model.name}' cannot train",
                ) from None
        raise ConfigError(path, "model.name", str(exc).removeprefix("model.name ")) from None
    check_device(cfg, path)
    return RunFacts(task)


def check_device(cfg: RunConfig, path: str | Path) -> None:
    """``training.device: cuda`` needs a torch build that sees a CUDA device here."""
    if cfg.training.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"a CUDA {torch.version.cuda} build"
        raise ConfigError(
            path,
            "training.device",
            f"'cuda' but torch {torch.__version__} ({build}) sees no CUDA device here; expected 'auto' or 'cpu' "
            "(or install the CUDA build of torch: README, Install into your own environment)",
        )


def check_writable_folder(folder: str | Path, path: str | Path, field: str) -> None:
    """``folder`` is, or can be created as, a writable folder (checked on its nearest existing
    ancestor; nothing is created)."""
    target = Path(folder).expanduser()
    target = target if target.is_absolute() else Path.cwd() / target
    if target.exists() and not target.is_dir():
        raise ConfigError(path, field, f"{target} exists and is not a folder")
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(path, field, f"cannot create {target}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == target else f"cannot be created: {probe} is not writable"
        raise ConfigError(path, field, f"{target} {what}")


def local_capacity() -> tuple[float, float]:
    """(CPUs, GPUs) of a local Ray cluster as the driver starts it (all cores, all visible GPUs)."""
    gpus = 0
    try:
        import torch

        gpus = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA: no GPUs
        gpus = 0
    return float(os.cpu_count() or 1), float(gpus)


def check_capacity(
    cfg: SearchSpaceFile, path: str | Path, *, trials: int, concurrency: int, cpus: float, gpus: float
) -> None:
    """The trials that run at once (``min(concurrency, trials)``), each with ``workers`` Ray Train
    workers, fit into ``cpus`` CPUs and ``gpus`` GPUs."""
    d = cfg.distributed
    one_cpu, one_gpu = d.workers * d.cpus_per_worker, d.workers * d.gpus_per_worker
    if one_cpu > cpus + 1e-9:
        raise ConfigError(
            path,
            "distributed.workers",
            f"one trial needs {d.workers} workers x {d.cpus_per_worker:g} CPU = {one_cpu:g} CPUs, but the "
            f"local cluster has {cpus:g}: lower distributed.workers or distributed.cpus_per_worker",
        )
    if one_gpu > gpus + 1e-9:
        raise ConfigError(
            path,
            "distributed.gpus_per_worker",
            f"one trial needs {d.workers} workers x {d.gpus_per_worker:g} GPU = {one_gpu:g} GPUs, but the "
            f"local cluster has {gpus:g}: set distributed.gpus_per_worker 0 or use a GPU cluster (--address)",
        )
    at_once = min(concurrency, trials)
    need_cpu, need_gpu = at_once * one_cpu, at_once * one_gpu
    for what, have, need, one, per in (
        ("CPU", cpus, need_cpu, one_cpu, d.cpus_per_worker),
        ("GPU", gpus, need_gpu, one_gpu, d.gpus_per_worker),
    ):
        if need > have + 1e-9:
            raise ConfigError(
                path,
                "search.concurrency",
                f"concurrency {at_once} x {d.workers} workers x {per:g} {what} = {need:g} {what}s, but the "
                f"local cluster has {have:g}: expected at most {int(have // one)} trials at a time "
                f"(lower --concurrency or distributed.{what.lower()}s_per_worker)",
            )


def _is_local_path(uri: str) -> bool:
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def check_search(
    cfg: SearchSpaceFile,
    path: str | Path,
    *,
    address: str | None = None,
    run_dir: str | None = None,
    storage_path: str | None = None,
    tracking_uri: str | None = None,
    capacity: tuple[float, float] | None = None,
) -> SearchFacts:
    """Everything ``econ-ray search`` needs, checked before Ray, MLflow or the run folder start.

    ``cfg`` carries the effective trials, concurrency and sampler. The capacity check applies to a
    new local cluster only (no ``address`` and no ``RAY_ADDRESS``); an existing cluster may
    autoscale. ``capacity`` = (CPUs, GPUs) overrides the machine's (for tests).
    """
    from econ_ray.search.space import distributions, grid
    from econ_ray.tracking import TrackingError, check_tracking_uri
    from econ_ray.tracking import tracking_uri as resolve_uri

    # an existing cluster's nodes load the model, not this machine
    run = check_run(cfg, path, loads_here=not (address or os.environ.get("RAY_ADDRESS")))
    s = cfg.search
    try:
        distributions(s.space)
        if s.sampler == "grid":
            grid(s.space, s.trials)
    except ValueError as exc:
        raise ConfigError(
            path,
            "search.space",
            f"{exc}; expected a range for lam, alpha, beta, tau, tau_rel, target_ratio or target_gflops",
        ) from None
    local = None
    if not (address or os.environ.get("RAY_ADDRESS")):
        local = capacity or local_capacity()
        check_capacity(cfg, path, trials=s.trials, concurrency=s.concurrency, cpus=local[0], gpus=local[1])
    if run_dir:
        check_writable_folder(run_dir, path, "--run-dir")
    else:
        root = os.environ.get(RUN_ROOT_ENV)
        check_writable_folder(root or "runs", path, RUN_ROOT_ENV if root else "run folder (./runs)")
    storage = storage_path or os.environ.get(STORAGE_ENV)
    if storage and _is_local_path(storage):
        local_storage = urllib.parse.urlparse(storage).path if storage.startswith("file:") else storage
        check_writable_folder(local_storage, path, "--storage-path" if storage_path else STORAGE_ENV)
    uri = resolve_uri(tracking_uri)
    try:
        check_tracking_uri(uri)
    except TrackingError as exc:
        field = (
            "MLFLOW_TRACKING_URI" if tracking_uri is None and os.environ.get("MLFLOW_TRACKING_URI") else "tracking URI"
        )
        raise ConfigError(path, field, f"{exc}; expected a reachable server or a writable sqlite:///path") from None
    return SearchFacts(run.task, capacity=local, tracking_uri=uri)
