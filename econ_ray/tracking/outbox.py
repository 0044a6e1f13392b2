"""Tracking that survives an outage of the MLflow store: what cannot be logged waits on disk.

:class:`BufferedTracker` has the calls a search makes on :class:`MlflowTracker` (children, metrics,
series, parent metrics and artifacts, registration). Each call goes to the store; when one fails
(server stopped, network gone, database locked past its retries) the tracker goes *offline* for the
rest of the search: that call and every later one are appended, in order, to
``RUN_DIR/tracking_outbox/ops-<time>-<pid>.jsonl`` (one JSON object a line, flushed and fsync'ed),
so training never waits on tracking and nothing is lost. Staying offline keeps the order the store
needs (a trial's metrics after its child run was created, the registration after the trial ended).

:func:`replay` uploads an outbox once the store is back (``econ-ray sync RUN_DIR``). It counts the
operations done in ``<file>.done`` after each one, so an interrupted sync goes on where it stopped,
and renames a finished file to ``<file>.synced``. Replaying is idempotent where MLflow allows it:
child runs are found again by their trial tag, and a trial's model is registered only if its child
run has no version of that name yet (:func:`register_once`).

For an HTTP store MLflow's own retries (7 with exponential back-off, minutes per call) would stall the
search at the first dead request: unless set already, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is lowered
to 3 and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` to 30 s in this process.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

OUTBOX_DIR = "tracking_outbox"
_TRANSIENT = ("database is locked", "database table is locked")


def register_once(
    tracker: Any, *, trial_id: str, model_dir: str, name: str, tags: Mapping[str, Any], alias: str
) -> int:
    """The registry version of ``trial_id``'s model under ``name``: the existing one of its child run
    (a resumed or re-synced search) with ``alias`` moved to it, else a newly registered one."""
    from mlflow.exceptions import MlflowException

    from econ_ray.tracking.registry import register_model

    run_id = tracker.child_id(trial_id)
    if run_id is not None:
        try:
            found = tracker.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        except MlflowException:
            found = []
        if found:
            version = max(int(v.version) for v in found)
            tracker.client.set_registered_model_alias(name, alias, str(version))
            return version
    return register_model(tracker, trial_id=trial_id, model_dir=model_dir, name=name, tags=tags, alias=alias)


def apply_op(tracker: Any, op: str, args: Mapping[str, Any]) -> Any:
    """Run one recorded operation on a real :class:`MlflowTracker` (with its parent attached)."""
    a = dict(args)
    if op == "start_child":
        return tracker.start_child(a["trial_id"], params=a.get("params") or {}, tags=a.get("tags"))
    if op == "log_metrics":
        return tracker.log_metrics(a["trial_id"], a["metrics"], step=a["step"])
    if op == "log_series":
        return tracker.log_series(a["trial_id"], a["key"], a["values"], start_step=a.get("start_step", 0))
    if op == "finish_child":
        return tracker.finish_child(
            a["trial_id"], status=a.get("status", "FINISHED"), metrics=a.get("metrics"), reason=a.get("reason")
        )
    if op == "log_parent_metrics":
        return tracker.log_parent_metrics(a["metrics"], step=a.get("step"))
    if op == "log_parent_artifacts":
        return tracker.log_parent_artifacts(
            [p for p in a["paths"] if Path(p).exists()], artifact_path=a.get("artifact_path")
        )
    if op == "set_parent_tag":
        return tracker.client.set_tag(tracker.parent_run_id, a["key"], str(a["value"]))
    if op == "end_parent":
        return tracker.end_parent(a.get("status", "FINISHED"))
    if op == "register":
        return register_once(
            tracker, trial_id=a["trial_id"], model_dir=a["model_dir"], name=a["name"], tags=a["tags"], alias=a["alias"]
        )
    raise ValueError(f"unknown tracking operation {op!r}")


def _http_defaults(uri: str) -> None:
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


class BufferedTracker:
    """An :class:`MlflowTracker` whose calls, once the store fails, are kept in an outbox on disk."""

    def __init__(self, tracker: Any, run_dir: str | Path, *, lock_retries: int = 8) -> None:
        self.tracker = tracker
        self.folder = Path(run_dir) / OUTBOX_DIR
        self.offline_reason: str | None = None
        self.pending = 0
        self.lock_waits = 0  # retries after SQLite's "database is locked" (another writer)
        self._file: Path | None = None
        self._lock = threading.RLock()
        self._lock_retries = lock_retries
        _http_defaults(getattr(tracker, "uri", ""))

    # the tracker's read-only side
    @property
    def parent_run_id(self) -> str | None:
        return self.tracker.parent_run_id

    def child_id(self, trial_id: str) -> str | None:
        return self.tracker.child_id(trial_id)

    @property
    def outbox_file(self) -> Path | None:
        return self._file

    def _append(self, op: str, args: Mapping[str, Any]) -> None:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = self.folder / f"ops-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        line = json.dumps({"op": op, "args": args, "time": time.time()}, default=str)
        with open(self._file, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.pending += 1

    def _call(self, op: str, **args: Any) -> Any:
        with self._lock:
            if self.offline_reason is None:
                for attempt in range(self._lock_retries + 1):
                    try:
                        return apply_op(self.tracker, op, args)
                    except Exception as exc:  # noqa: BLE001 (any store failure: keep training, keep the op)
                        text = " ".join(str(exc).split())
                        if any(t in text for t in _TRANSIENT) and attempt < self._lock_retries:
                            self.lock_waits += 1
                            time.sleep(min(8.0, 0.25 * 2**attempt))  # another writer holds SQLite's lock
                            continue
                        self.offline_reason = f"{type(exc).__name__}: {text[:300]}"
                        print(
                            f"econ-ray: tracking store failed ({self.offline_reason}); keeping tracking "
                            f"operations in {self.folder} (upload them with econ-ray sync)",
                            file=sys.stderr,
                        )
                        break
            self._append(op, args)
            return None

    def start_child(self, trial_id: str, *, params: Mapping[str, Any], tags: Mapping[str, Any] | None = None) -> Any:
        return self._call("start_child", trial_id=str(trial_id), params=dict(params), tags=dict(tags or {}))

    def log_metrics(self, trial_id: str, metrics: Mapping[str, Any], *, step: int) -> None:
        self._call("log_metrics", trial_id=str(trial_id), metrics=dict(metrics), step=int(step))

    def log_series(self, trial_id: str, key: str, values: Sequence[float], *, start_step: int = 0) -> None:
        self._call("log_series", trial_id=str(trial_id), key=key, values=list(values), start_step=int(start_step))

    def finish_child(
        self,
        trial_id: str,
        *,
        status: str = "FINISHED",
        metrics: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        self._call("finish_child", trial_id=str(trial_id), status=status, metrics=dict(metrics or {}), reason=reason)

    def log_parent_metrics(self, metrics: Mapping[str, Any], *, step: int | None = None) -> None:
        self._call("log_parent_metrics", metrics=dict(metrics), step=step)

    def log_parent_artifacts(self, paths: Sequence[str | Path], *, artifact_path: str | None = None) -> None:
        self._call("log_parent_artifacts", paths=[str(p) for p in paths], artifact_path=artifact_path)

    def set_parent_tag(self, key: str, value: Any) -> None:
        self._call("set_parent_tag", key=key, value=str(value))

    def end_parent(self, status: str = "FINISHED") -> None:
        self._call("end_parent", status=status)

    def register(self, *, trial_id: str, model_dir: str, name: str, tags: Mapping[str, Any], alias: str) -> int | None:
        """The registry version, or None when the registration waits in the outbox."""
        return self._call(
            "register",
            trial_id=str(trial_id),
            model_dir=str(model_dir),
            name=name,
            tags={k: v for k, v in tags.items() if v is not None},
            alias=alias,
        )


def outbox_files(run_dir: str | Path) -> list[Path]:
    """The outbox files of a run folder that still hold operations to upload, oldest first."""
    folder = Path(run_dir) / OUTBOX_DIR
    return sorted(folder.glob("ops-*.jsonl")) if folder.is_dir() else []


def _read_ops(path: Path) -> list[dict[str, Any]]:
    ops = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            ops.append(json.loads(line))
        except ValueError:  # a line cut by a crash mid-write: the operation never completed
            continue
    return ops


def pending_ops(run_dir: str | Path) -> int:
    """Operations not yet uploaded, over all outbox files of ``run_dir``."""
    total = 0
    for path in outbox_files(run_dir):
        done = path.with_name(path.name + ".done")
        total += len(_read_ops(path)) - (int(done.read_text() or 0) if done.is_file() else 0)
    return total


def replay(run_dir: str | Path, tracker: Any) -> dict[str, Any]:
    """Upload every pending operation of ``run_dir`` through ``tracker`` (parent attached), in order.
    Returns ``{"applied": n, "files": [...], "versions": {trial_id: version}}``."""
    from econ_ray.training.checkpoint import atomic_write

    applied, files, versions = 0, [], {}
    for path in outbox_files(run_dir):
        done_file = path.with_name(path.name + ".done")
        done = int(done_file.read_text() or 0) if done_file.is_file() else 0
        ops = _read_ops(path)
        for i in range(done, len(ops)):
            op = ops[i]
            out = apply_op(tracker, op["op"], op["args"])
            if op["op"] == "register":
                versions[op["args"]["trial_id"]] = out
            applied += 1

            def mark_done(p: Path, n: int = i + 1) -> None:
                p.write_text(str(n))

            atomic_write(done_file, mark_done)
        path.rename(path.with_name(path.name + ".synced"))
        done_file.unlink(missing_ok=True)
        files.append(str(path))
    return {"applied": applied, "files": files, "versions": versions}
