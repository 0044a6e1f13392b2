"""Register trained econ-ray models in the MLflow model registry, find and load them back.

A registered version is an MLflow pyfunc model whose single artifact ``econ_model`` is the model
folder written by :func:`econ_ray.modeling.save_model`. Each version carries the trial's numbers as
tags (``metric``, ``effective_gflops``, ``higher_is_better``, ...), which is what
:func:`best_version` selects on: the best metric within a compute budget.

Everything goes through an explicit ``MlflowClient`` on the given URI: the model is saved with
``mlflow.pyfunc.save_model`` to a temporary folder, uploaded as a LoggedModel linked to the trial's
child run, and registered from the LoggedModel's storage location (with its ``model_id``). No
global MLflow state is read or set, so ``MLFLOW_TRACKING_URI`` may point elsewhere.
"""

import contextlib
import logging
import math
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

# mypy does not see mlflow.pyfunc.PythonModel as an attribute (mlflow loads pyfunc lazily)
from mlflow.pyfunc import PythonModel

from econ_ray.modeling.io import META_FILE
from econ_ray.tracking.store import (
    MlflowTracker,
    TrackingError,
    has_secret,
    redact_text_files,
    redact_uri,
    sqlite_path,
    tracking_uri,
)

ARTIFACT_KEY = "econ_model"
MODEL_ID_TAG = "model_id"  # a version's logged model, also as a tag (readable in any registry store)


@contextlib.contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking URI at ``uri`` for the block (restored after)."""
    from mlflow.tracking._tracking_service import utils

    before = utils._tracking_uri  # what set_tracking_uri pinned, if anything (not the environment's)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        utils._tracking_uri = before  # unpinned again: later calls resolve MLFLOW_TRACKING_URI afresh


def logged_model_id(version: Any) -> str | None:
    """The id of the logged model a registry version was made from: ``version.model_id`` where the
    store keeps it, else its ``models:/<id>`` source, else its ``model_id`` tag."""
    if getattr(version, "model_id", None):
        return str(version.model_id)
    source = str(getattr(version, "source", "") or "")
    if source.startswith("models:/m-"):
        return source[len("models:/") :].split("/", 1)[0]
    return (getattr(version, "tags", None) or {}).get(MODEL_ID_TAG)


LOGGED_MODEL_NAME = "model"


def _pip_requirements() -> list[str]:
    try:
        from importlib.metadata import version

        return [f"econ-ray=={version('econ-ray')}"]
    except Exception:  # noqa: BLE001 (not installed as a distribution)
        return ["econ-ray"]


def _signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "text"), ColSpec("string", "text_pair", required=False)]))


class _DropPickleNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "CloudPickle" not in record.getMessage()


@contextlib.contextmanager
def _quiet_save() -> Iterator[None]:
    """Silence MLflow's advice that does not apply here (CloudPickle of an importable class, no
    input example although a signature is given) while saving the pyfunc model."""
    logger, notice = logging.getLogger("mlflow.pyfunc"), _DropPickleNotice()
    logger.addFilter(notice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example.*", category=UserWarning)
            yield
    finally:
        logger.removeFilter(notice)


class EconPyfunc(PythonModel):
    """Serve an econ-ray model folder: a DataFrame with ``text`` (and optional ``text_pair``) in,
    one prediction per row out: the class id (classification), the score (regression) or the
    mean per-token cross-entropy in nats (lm)."""

    batch_size = 64

    def load_context(self, context) -> None:
        import torch

        from econ_ray.modeling import load_model

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.tokenizer, self.meta = load_model(context.artifacts[ARTIFACT_KEY], device=device)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "text" not in frame.columns:
            raise ValueError(f"input needs a 'text' column (got {list(frame.columns)})")
        texts = ["" if _missing(t) else str(t) for t in frame["text"]]
        pairs = None
        if "text_pair" in frame.columns:
            pairs = [None if _missing(t) else str(t) for t in frame["text_pair"]]
        return predict_texts(self.model, self.tokenizer, self.meta, texts, pairs, batch_size=self.batch_size)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def predict_texts(
    model,
    tokenizer,
    meta: Mapping[str, Any],
    texts: list[str],
    pairs: list[str | None] | None = None,
    *,
    batch_size: int = 64,
) -> list:
    """Predictions of a loaded econ-ray model on raw texts, encoded exactly as in training
    (padded and truncated to the saved ``data.max_length``)."""
    import torch
    from torch import nn

    from econ_ray.data import TaskSpec
    from econ_ray.data.encode import encode_split

    if not texts:
        return []
    t = meta["task"]
    task = TaskSpec(t["name"], t["kind"], int(t["num_labels"]), t["metric_name"])
    max_length = int(meta["config"]["data"]["max_length"])
    label = 0.0 if task.kind == "regression" else 0
    examples = [{"text": x, "text_pair": (pairs[i] if pairs else None), "label": label} for i, x in enumerate(texts)]
    if task.kind == "lm":
        examples = [{"text": x} for x in texts]
    enc = encode_split(examples, task, tokenizer, max_length)
    device = next(model.parameters()).device
    out: list = []
    with torch.no_grad():
        for start in range(0, len(enc), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(enc)))
            batch = {k: v.to(device) for k, v in enc.batch(idx).items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits.float()
            if task.kind == "lm":
                tgt = labels[:, 1:]
                ce = nn.functional.cross_entropy(
                    logits[:, :-1].transpose(1, 2), tgt, ignore_index=-100, reduction="none"
                )
                n = (tgt != -100).sum(1)
                mean = ce.sum(1) / n.clamp(min=1)
                out += [float(m) if int(c) > 0 else float("nan") for m, c in zip(mean.cpu(), n.cpu())]
            elif task.kind == "regression":
                out += [float(v) for v in logits.squeeze(-1).cpu()]
            else:
                out += [int(v) for v in logits.argmax(-1).cpu()]
    return out


# ---------------------------------------------------------------------------------------------
# Registering


def register_model(
    tracker: MlflowTracker, *, trial_id: str, model_dir: str | Path, name: str, tags: Mapping[str, Any], alias: str
) -> int:
    """Log ``model_dir`` as a pyfunc model of the trial's child run, register it as a new version
    of ``name`` with ``tags`` (stringified) and move ``alias`` to it; returns the version."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    model_dir = Path(model_dir)
    if not (model_dir / META_FILE).is_file():
        raise TrackingError(f"{model_dir}: not an econ-ray model folder (no {META_FILE})")
    run_id = tracker.child_id(trial_id)
    if run_id is None:
        raise TrackingError(f"no child run for trial {trial_id!r}: start_child() before register_model()")
    client = tracker.client
    str_tags = {str(k): str(v) for k, v in tags.items() if v is not None and not has_secret(str(v))}
    try:
        logged = client.create_logged_model(
            tracker.experiment_id,
            name=LOGGED_MODEL_NAME,
            source_run_id=run_id,
            tags={"trial_id": str(trial_id)},
            model_type="econ-ray",
        )
        mlflow_model = Model(
            artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id, model_id=logged.model_id
        )
        with tempfile.TemporaryDirectory(prefix="econ-ray-pyfunc-") as tmp:
            local = Path(tmp) / "model"
            with _quiet_save():
                mlflow.pyfunc.save_model(
                    path=str(local),
                    python_model=EconPyfunc(),
                    artifacts={ARTIFACT_KEY: str(model_dir.resolve())},
                    pip_requirements=_pip_requirements(),
                    signature=_signature(),
                    mlflow_model=mlflow_model,
                )
            redact_text_files(local)  # the copy: econ.json carries the run config
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # Source "models:/<model_id>" is MLflow's link from a version to its logged model (what the UI
        # follows; MLflow 3's SQL registry keeps no model_id column, so ModelVersion.model_id reads
        # None there: `logged_model_id` reads the link). The SQL store resolves that URI through the
        # *global* tracking URI, so it points at this store for the call.
        with _global_tracking_uri(tracker.uri):
            mv = client.create_model_version(
                name,
                source=f"models:/{logged.model_id}",
                run_id=run_id,
                tags={**str_tags, MODEL_ID_TAG: logged.model_id},
                model_id=logged.model_id,
                await_creation_for=0,
            )
        client.set_registered_model_alias(name, alias, mv.version)
        _index_logged_model(client, logged.model_id, run_id, name, int(mv.version), str_tags)
    except MlflowException as exc:
        raise TrackingError(f"registering {model_dir} as {name!r}: {exc.message}") from None
    return int(mv.version)


# The logged model of each version is the store's own index for "best under a budget": its metrics
# (`budget`: the search's cost, `score`: the metric signed so that larger is better, and every numeric
# tag) and params (the knobs) are what `search_logged_models` filters and orders on the server.
INDEX_TAG_NAME, INDEX_TAG_VERSION = "registered_model", "registered_version"


def _index_logged_model(
    client: Any, model_id: str, run_id: str, name: str, version: int, tags: Mapping[str, str]
) -> None:
    from mlflow.entities import Metric

    parsed = {k: _parse_tag(v) for k, v in tags.items()}
    numbers = {k: v for k, v in parsed.items() if _number(v) is not None}
    budget, metric = budget_gflops(parsed), _number(parsed.get("metric"))
    if budget is not None:
        numbers["budget"] = budget
    if metric is not None:
        numbers["score"] = metric if _higher(parsed) else -metric
    now = int(time.time() * 1000)
    client.log_batch(
        run_id, metrics=[Metric(k, float(v), now, 0, model_id=model_id) for k, v in sorted(numbers.items())]
    )
    knobs = {k: str(v) for k, v in tags.items() if k not in numbers and k != "parent_run_id"}
    if knobs:
        client.log_model_params(model_id, knobs)
    client.set_logged_model_tags(model_id, {INDEX_TAG_NAME: name, INDEX_TAG_VERSION: str(version)})


# ---------------------------------------------------------------------------------------------
# Finding and loading


def _client(uri: str | None):
    """A client of an existing store: a lookup never creates one (a SQLite file that is not there is
    an error naming it, not a new empty database)."""
    from mlflow.tracking import MlflowClient

    u = tracking_uri(uri)
    db = sqlite_path(u)
    if db is not None and not (db if db.is_absolute() else Path.cwd() / db).is_file():
        raise TrackingError(
            f"no tracking store at {redact_uri(u)} (the file does not exist): run a search here first, or point "
            "--tracking-uri / MLFLOW_TRACKING_URI at the store the search wrote"
        )
    return MlflowClient(tracking_uri=u, registry_uri=u), u


def _parse_tag(value: str) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return f


def list_versions(name: str, *, uri: str | None = None) -> list[dict[str, Any]]:
    """Every version of registered model ``name``: name, version, aliases, run_id and its tags
    (numeric ones as floats), cheapest first (by :func:`budget_gflops`)."""
    from mlflow.exceptions import MlflowException

    client, u = _client(uri)
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise TrackingError(f"registered model {name!r} does not exist at {redact_uri(u)}") from None
        raise TrackingError(f"registered model {name!r} at {redact_uri(u)}: {exc.message}") from None
    aliases: dict[int, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():  # search results carry no aliases
        aliases.setdefault(int(version), []).append(alias)
    escaped = name.replace("'", "\\'")
    rows, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{escaped}'", max_results=1000, page_token=token)
        for mv in page:
            rows.append(
                {
                    "name": mv.name,
                    "version": int(mv.version),
                    "aliases": sorted(set(mv.aliases or []) | set(aliases.get(int(mv.version), []))),
                    "run_id": mv.run_id,
                    "tags": {k: _parse_tag(v) for k, v in (mv.tags or {}).items()},
                }
            )
        token = page.token
        if not token:
            break

    def gflops(row: dict[str, Any]) -> float:
        g = budget_gflops(row["tags"])
        return g if g is not None else math.inf

    return sorted(rows, key=lambda r: (gflops(r), r["version"]))


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def budget_gflops(tags: dict[str, Any]) -> float | None:
    """The GFLOPs a version is budgeted by: the tag its search minimised (tag ``cost_key``, e.g.
    ``static_gflops``; ``effective_gflops`` for versions registered before that tag existed)."""
    key = tags.get("cost_key")
    return _number(tags.get(key if isinstance(key, str) and key else "effective_gflops"))


def _higher(tags: Mapping[str, Any]) -> bool:
    return str(tags.get("higher_is_better", "true")).strip().lower() not in ("false", "0", "0.0", "no")


def _experiment_ids(client: Any) -> list[str]:
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


@dataclass(frozen=True)
class BestAnswer:
    """What :func:`find_best` found: the version's row (None if nothing fits) and the versions within
    the budget it passed over because their metric is at or below the task's chance level."""

    row: dict[str, Any] | None
    skipped_at_chance: int = 0
    chance: float | None = None


def _chance(tags: Mapping[str, Any]) -> float | None:
    return _number(tags.get("chance_metric"))


def _above_chance(metric: float, chance: float | None, higher: bool) -> bool:
    return chance is None or (metric > chance if higher else metric < chance)


def best_logged(name: str, *, max_gflops: float, min_metric: float | None = None, uri: str | None = None) -> BestAnswer:
    """:func:`find_best` answered by the store: one ``search_logged_models`` query over the logged
    models indexed for ``name``, filtered on ``metrics.budget <= max_gflops`` (and the signed metric
    for ``min_metric``, else above the chance level the versions carry) and ordered by score, then by
    budget. Raises ``LookupError`` when ``name`` has no indexed logged model at all (versions
    registered before the index)."""
    client, u = _client(uri)
    exps = _experiment_ids(client)
    escaped = name.replace("'", "\\'")
    where = f"tags.{INDEX_TAG_NAME} = '{escaped}'"
    probe = client.search_logged_models(exps, filter_string=where, max_results=1)
    if not probe:
        raise LookupError(name)
    probe_version = client.get_model_version(name, str((probe[0].tags or {})[INDEX_TAG_VERSION]))
    probe_tags = {k: _parse_tag(v) for k, v in (probe_version.tags or {}).items()}
    higher, chance = _higher(probe_tags), _chance(probe_tags)
    flt = f"{where} AND metrics.budget <= {float(max_gflops)!r}"
    skipped = 0
    if min_metric is not None:
        flt += f" AND metrics.score >= {float(min_metric if higher else -min_metric)!r}"
    elif chance is not None:
        floor = float(chance if higher else -chance)
        below = client.search_logged_models(
            exps, filter_string=f"{flt} AND metrics.score <= {floor!r}", max_results=1000
        )
        skipped = len(below)
        flt += f" AND metrics.score > {floor!r}"
    order = [
        {"field_name": "metrics.score", "ascending": False},
        {"field_name": "metrics.budget", "ascending": True},
    ]
    found = client.search_logged_models(exps, filter_string=flt, order_by=order, max_results=1)
    if not found:
        return BestAnswer(None, skipped, chance)
    version = int((found[0].tags or {})[INDEX_TAG_VERSION])
    mv = client.get_model_version(name, str(version))
    row = {
        "name": mv.name,
        "version": int(mv.version),
        "aliases": sorted(mv.aliases or []),
        "run_id": mv.run_id,
        "tags": {k: _parse_tag(v) for k, v in (mv.tags or {}).items()},
    }
    return BestAnswer(row, skipped, chance)


def find_best(name: str, *, max_gflops: float, min_metric: float | None = None, uri: str | None = None) -> BestAnswer:
    """The version with the best ``metric`` tag among those whose budget (:func:`budget_gflops`: the
    search's cost, ``static_gflops`` by default) is ``<= max_gflops``
    and whose metric is ``>= min_metric`` (``<=`` where tag ``higher_is_better`` is ``false``, e.g.
    perplexity); without ``min_metric``, versions at or below the task's chance level (tag
    ``chance_metric``) are passed over and counted. Ties go to the cheaper one.

    Asked of the store (:func:`best_logged`, one filtered and ordered query) when the versions' logged
    models carry the index; versions registered before it are read and filtered here."""
    from mlflow.exceptions import MlflowException

    try:
        return best_logged(name, max_gflops=max_gflops, min_metric=min_metric, uri=uri)
    except LookupError:
        pass
    except MlflowException as exc:
        raise TrackingError(f"registered model {name!r}: {exc.message}") from None
    best, best_key, skipped, chance = None, None, 0, None
    for row in list_versions(name, uri=uri):
        tags = row["tags"]
        g, m = budget_gflops(tags), _number(tags.get("metric"))
        if g is None or m is None or g > max_gflops:
            continue
        higher = _higher(tags)
        if min_metric is not None and (m < min_metric if higher else m > min_metric):
            continue
        if min_metric is None and not _above_chance(m, _chance(tags), higher):
            skipped, chance = skipped + 1, _chance(tags)
            continue
        key = (-m if higher else m, g, -row["version"])
        if best_key is None or key < best_key:
            best, best_key = row, key
    return BestAnswer(best, skipped, chance)


def best_version(
    name: str, *, max_gflops: float, min_metric: float | None = None, uri: str | None = None
) -> dict[str, Any] | None:
    """The row of :func:`find_best` (None if nothing fits)."""
    return find_best(name, max_gflops=max_gflops, min_metric=min_metric, uri=uri).row


def resolve_version(ref: str, *, uri: str | None = None):
    """The ``ModelVersion`` of ``"NAME@ALIAS"`` or ``"NAME/VERSION"`` (also ``models:/...``)."""
    from mlflow.exceptions import MlflowException

    client, u = _client(uri)
    r = ref[len("models:/") :] if ref.startswith("models:/") else ref
    try:
        if "@" in r:
            name, alias = r.rsplit("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = r.rpartition("/")
        if not name or not version.isdigit():
            raise TrackingError(f"model reference {ref!r}: use NAME@ALIAS or NAME/VERSION")
        return client.get_model_version(name, version)
    except MlflowException as exc:
        raise TrackingError(f"model {ref!r} at {redact_uri(u)}: {exc.message}") from None


def download_registered(ref: str, dst: str | Path, *, uri: str | None = None) -> Path:
    """Download a registered version and make ``dst`` its econ-ray model folder (the folder
    ``econ_ray.modeling.load_model`` opens, holding ``econ.json``); returns ``dst``. ``dst`` must not
    exist or be empty; the MLflow wrapping (pyfunc ``MLmodel``, environment files) is not kept."""
    from mlflow.artifacts import download_artifacts

    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise TrackingError(f"{dst}: exists and is not an empty folder; give a new folder to download {ref!r} into")
    client, u = _client(uri)
    mv = resolve_version(ref, uri=u)
    source = client.get_model_version_download_uri(mv.name, mv.version)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="econ-ray-download-", dir=dst.parent) as tmp:
        local = Path(download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=u, registry_uri=u))
        preferred = local / "artifacts" / ARTIFACT_KEY
        if (preferred / META_FILE).is_file():
            folder = preferred
        else:
            found = sorted(local.rglob(META_FILE))
            if not found:
                raise TrackingError(f"model {ref!r}: no {META_FILE} in its artifacts (not an econ-ray model)")
            folder = found[0].parent
        if dst.exists():
            dst.rmdir()
        shutil.move(str(folder), str(dst))
    return dst


def load_registered(ref: str, *, uri: str | None = None, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, meta) of a registered version, ``"NAME@ALIAS"`` or ``"NAME/VERSION"``."""
    from econ_ray.modeling import load_model

    tmp = tempfile.mkdtemp(prefix="econ-ray-registered-")
    try:
        folder = download_registered(ref, Path(tmp) / "model", uri=uri)
        return load_model(folder, device=device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
