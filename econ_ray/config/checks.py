"""Pre-flight: everything that can be checked about a run or a search before any work starts.

``load_config`` checks the file against the schema (types, ranges, combinations). These checks go
further, still without training, starting Ray or writing anything: that the data source exists and
has the configured columns, that the model can be built for the task, that the search space gives
something to search, that the local cluster can hold the asked-for concurrency, that the run
folder and Tune storage can be written and that the tracking store answers.

Every failure is a :class:`~econ_ray.config.load.ConfigError`: one line naming the config file,
the field (a dotted config path, a CLI flag or an environment variable) and what was expected.
Nothing here creates a file, a folder, a Ray session or an MLflow run.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from econ_ray.config.load import ConfigError
from econ_ray.config.schema import RunConfig, SearchSpaceFile

RUN_ROOT_ENV = "ECON_RAY_RUN_ROOT"
STORAGE_ENV = "ECON_RAY_STORAGE_PATH"


def check_run(cfg: RunConfig, path: str | Path) -> str:
    """Data and model of one run; returns the task kind (classification | regression | lm)."""
    from econ_ray.data import DataError, check_source
    from econ_ray.modeling import ModelError, check_model

    d = cfg.data
    try:
        kind = check_source(d.source, columns=d.columns, kind=d.kind, builtin_options=d.builtin)
    except DataError as exc:
        field = "data.builtin" if exc.message.startswith("data.builtin: ") else "data.source"
        raise ConfigError(path, field, f"{d.source!r}: {exc.message.removeprefix('data.builtin: ')}") from None
    try:
        check_model(cfg.model, kind)
    except ModelError as exc:
        if kind == "lm" and d.kind is None and not d.source.startswith("builtin:") and not d.source.endswith(".txt"):
            # a table without its label column reads as a corpus; name the column, not the model
            try:
                check_source(d.source, columns=d.columns, kind="classification", builtin_options=d.builtin)
            except DataError as missing:
                raise ConfigError(
                    path,
                    "data.columns.label" if d.columns and "label" in d.columns else "data.source",
                    f"{d.source!r}: {missing.message}; without labels the file reads as a language-"
                    f"modelling corpus, which model.name '{cfg.model.name}' cannot train",
                ) from None
        raise ConfigError(path, "model.name", str(exc).removeprefix("model.name ")) from None
    return kind


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
) -> None:
    """Everything ``econ-ray search`` needs, checked before Ray, MLflow or the run folder start.

    ``cfg`` carries the CLI overrides (trials, concurrency, sampler). The capacity check applies to
    a new local cluster only (no ``address`` and no ``RAY_ADDRESS``); an existing cluster may
    autoscale. ``capacity`` = (CPUs, GPUs) overrides the machine's (for tests).
    """
    from econ_ray.search.space import distributions, lam_grid
    from econ_ray.tracking import TrackingError, check_tracking_uri
    from econ_ray.tracking import tracking_uri as resolve_uri

    check_run(cfg, path)
    s = cfg.search
    try:
        distributions(s.space)
        if s.sampler == "grid":
            lam_grid(s.space, s.trials)
    except ValueError as exc:
        raise ConfigError(
            path, "search.space", f"{exc}; expected a range for lam, alpha, beta, tau or tau_rel"
        ) from None
    if s.space.objective and "constrained" in s.space.objective and cfg.attention.mode != "gates":
        raise ConfigError(
            path,
            "search.space.objective",
            f"'constrained' closes gates: it needs attention.mode 'gates' (got '{cfg.attention.mode}')",
        )
    if not (address or os.environ.get("RAY_ADDRESS")):
        cpus, gpus = capacity or local_capacity()
        check_capacity(cfg, path, trials=s.trials, concurrency=s.concurrency, cpus=cpus, gpus=gpus)
    if run_dir:
        check_writable_folder(run_dir, path, "--run-dir")
    else:
        root = os.environ.get(RUN_ROOT_ENV)
        check_writable_folder(root or "runs", path, RUN_ROOT_ENV if root else "run folder (./runs)")
    storage = storage_path or os.environ.get(STORAGE_ENV)
    if storage and _is_local_path(storage):
        local = urllib.parse.urlparse(storage).path if storage.startswith("file:") else storage
        check_writable_folder(local, path, "--storage-path" if storage_path else STORAGE_ENV)
    uri = resolve_uri(tracking_uri)
    try:
        check_tracking_uri(uri)
    except TrackingError as exc:
        field = (
            "MLFLOW_TRACKING_URI" if tracking_uri is None and os.environ.get("MLFLOW_TRACKING_URI") else "tracking URI"
        )
        raise ConfigError(path, field, f"{exc}; expected a reachable server or a writable sqlite:///path") from None
