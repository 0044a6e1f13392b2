"""MLflow tracking for a search: one parent run per search, one nested child run per trial.

Every write goes through ``mlflow.tracking.MlflowClient`` with explicit run ids: no global
active-run state, so an :class:`MlflowTracker` is safe to call from Ray Tune callbacks in the
search driver process. ``mlflow`` itself is imported lazily so that importing this module (for
``tracking_uri`` / ``check_tracking_uri`` in the CLI) stays cheap.

The model registry needs a database store, so the default tracking URI is a SQLite file in the
working directory. For a SQLite store the experiment's artifacts go next to the database
(``<db folder>/mlartifacts``) rather than MLflow's default ``./mlruns`` relative to wherever the
process happens to run.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

# MLflow's limits (mlflow/utils/validation.py); repeated here so importing this module does not
# import mlflow.
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
TRIAL_TAG = "trial_id"
ROLE_TAG = "econ_ray.role"
FAILURE_TAG = "failure_reason"
STATUSES = ("FINISHED", "FAILED", "KILLED")
OPEN_STATUSES = ("RUNNING", "SCHEDULED")  # a run not ended yet

# Keys whose names contain one of these words are never logged ...
SECRET_WORDS = ("token", "secret", "password", "passwd", "key", "credential", "auth", "cookie", "session")
# ... except these exact knob names (a search space or config field that merely contains a word).
ALLOWED_KEYS = frozenset(
    {
        "lam",
        "alpha",
        "beta",
        "tau",
        "tau_rel",
        "objective",
        "k",
        "budget",
        "keep_strongest",
        "attention.keep_strongest",
        "attention.k",
        "attention.budget",
        "max_tokens",
        "num_tokens",
        "tokenizer",
        "model.tokenizer",
    }
)
# Values that look like a credential whatever their key is called.
_SECRET_VALUE = re.compile(
    r"(AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|sk-[A-Za-z0-9_\-]{20,}"  # OpenAI-style keys
    r"|xox[abpr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"  # JWT
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@"  # URL with user:password@
    r"|\bBearer\s+\S+",
    re.IGNORECASE,
)
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]+$")
# Environment variables whose names say they hold a secret; their values are never logged.
_SECRET_ENV_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|AUTH|(^|_)KEY($|_)|API_?KEY|PRIVATE", re.IGNORECASE
)
# ... except settings about secrets, which hold ordinary words or paths (RAY_AUTH_MODE=token, HF_TOKEN_PATH)
_NOT_SECRET_ENV_SUFFIX = ("_MODE", "_PATH", "_FILE", "_DIR", "_SOCK", "_TYPE", "_ENABLED", "_URL", "_URI")
_MIN_SECRET_LEN = 8  # shorter values ("1", "true", "token") would redact ordinary text
# Text files uploaded as artifacts are redacted; other files (weights, images) are copied as they are.
TEXT_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".csv", ".tsv", ".txt", ".md", ".log", ".cfg", ".ini", ".toml")
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")


class TrackingError(RuntimeError):
    """The tracking store cannot be used, or a tracking call was made out of order."""


# ---------------------------------------------------------------------------------------------
# URIs


def tracking_uri(explicit: str | None = None, *, cwd: str | Path | None = None) -> str:
    """The tracking URI to use: ``explicit``, else ``$MLFLOW_TRACKING_URI``, else a SQLite
    database ``mlflow.db`` in ``cwd`` (default: the working directory)."""
    if explicit:
        return str(explicit)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    folder = Path(cwd if cwd is not None else os.getcwd()).resolve()
    return f"sqlite:///{folder}/mlflow.db"


def redact_uri(uri: str) -> str:
    """``uri`` with any ``user:password@`` part replaced, for messages."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", uri)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths against the working
    directory), or None for an in-memory database or a URI of another scheme."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(urllib.parse.unquote(path))


def _file_path(uri: str) -> Path:
    if uri.startswith("file:"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))
    return Path(uri)


def _check_writable_folder(folder: Path, what: str, *, may_create: bool) -> None:
    if folder.is_dir():
        if not os.access(folder, os.W_OK | os.X_OK):
            raise TrackingError(f"{what}: folder {folder} is not writable")
        return
    if folder.exists():
        raise TrackingError(f"{what}: {folder} is not a folder")
    if not may_create:
        raise TrackingError(f"{what}: folder {folder} does not exist")
    parent = folder.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise TrackingError(f"{what}: folder {folder} does not exist and cannot be created in {parent}")


def check_tracking_uri(uri: str, *, timeout_s: float = 3.0) -> None:
    """Raise :class:`TrackingError` (one-line message) if ``uri`` cannot be used for tracking.

    ``sqlite:///path``: the database's folder must exist and be writable (and the file, if it
    exists). ``http(s)://host``: ``GET <uri>/health`` must answer 2xx within ``timeout_s``.
    ``file:`` or a plain path: the folder (or its parent, if it does not exist yet) must be
    writable. Anything else is unsupported.
    """
    shown = redact_uri(uri)
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme == "sqlite":
        db = sqlite_path(uri)
        if db is None:
            raise TrackingError(
                f"tracking URI {shown}: need a SQLite file (sqlite:///path/mlflow.db), not an in-memory database"
            )
        db = db if db.is_absolute() else Path.cwd() / db
        _check_writable_folder(db.parent, f"tracking URI {shown}", may_create=False)
        if db.exists() and (not db.is_file() or not os.access(db, os.R_OK | os.W_OK)):
            raise TrackingError(f"tracking URI {shown}: database file {db} is not a writable file")
        return
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only)
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise TrackingError(f"tracking server {shown}: /health answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"tracking server {shown} did not answer /health within {timeout_s:g}s: {reason}"
            ) from None
        if not 200 <= status < 300:
            raise TrackingError(f"tracking server {shown}: /health answered HTTP {status}")
        return
    if scheme == "file" or scheme == "":
        _check_writable_folder(_file_path(uri), f"tracking URI {shown}", may_create=True)
        return
    raise TrackingError(
        f"unsupported tracking URI {shown}: use sqlite:///path/mlflow.db, http(s)://server or file:/folder"
    )


# ---------------------------------------------------------------------------------------------
# Params and metrics


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _is_secret_key(name: str) -> bool:
    """Whether a dotted key names a secret: some segment (other than an allowed knob name)
    contains a secret word or looks like an environment variable."""
    if name in ALLOWED_KEYS:
        return False
    for part in name.split("."):
        if part in ALLOWED_KEYS:
            continue
        if _ENV_NAME.match(part):  # AWS_REGION, HOME, HF_HOME, ...
            return True
        low = part.lower()
        if any(word in low for word in SECRET_WORDS):
            return True
    return False


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables whose names say they hold a secret (AWS_SECRET_ACCESS_KEY,
    HF_TOKEN, MLFLOW_TRACKING_PASSWORD, ...), longest first."""
    env = os.environ if environ is None else environ
    vals = {
        v
        for k, v in env.items()
        if _SECRET_ENV_NAME.search(k)
        and not k.upper().endswith(_NOT_SECRET_ENV_SUFFIX)
        and v
        and len(v) >= _MIN_SECRET_LEN
    }
    return sorted(vals, key=len, reverse=True)


def has_secret(text: str) -> bool:
    """Whether ``text`` looks like a credential or contains a secret environment variable's value."""
    return bool(_SECRET_VALUE.search(text)) or any(v in text for v in env_secrets())


def redact(text: str) -> str:
    """``text`` with credential-like substrings and secret environment values replaced by ``***``."""
    for v in env_secrets():
        text = text.replace(v, "***")
    return _SECRET_VALUE.sub("***", text)


def redact_text_files(folder: str | Path) -> int:
    """Redact every text file under ``folder`` in place (a copy about to be uploaded); returns how
    many files changed."""
    changed = 0
    for f in Path(folder).rglob("*"):
        if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES:
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            clean = redact(text)
            if clean != text:
                f.write_text(clean, encoding="utf-8")
                changed += 1
    return changed


def clean_key(name: str) -> str:
    """``name`` with characters MLflow rejects replaced by ``_``, cut to MLflow's key length."""
    return _BAD_KEY_CHARS.sub("_", str(name))[:MAX_KEY_LENGTH]


def safe_params(d: Mapping[str, Any], *, limit: int = MAX_PARAM_VAL_LENGTH) -> dict[str, str]:
    """Params fit to log: nested mappings flattened to dotted keys, values stringified and cut to
    ``limit`` characters; keys that name a secret (token/secret/password/key/... other than the
    searched knob names), environment-variable-like keys, values that look like a credential and
    None values are dropped."""
    out: dict[str, str] = {}
    for name, value in _flatten(d):
        if value is None or _is_secret_key(name):
            continue
        text = value if isinstance(value, str) else str(value)
        if has_secret(text):
            continue
        out[clean_key(name)] = text[:limit]
    return out


def _safe_tags(d: Mapping[str, Any] | None) -> dict[str, str]:
    if not d:
        return {}
    system = {k: str(v)[:MAX_TAG_VAL_LENGTH] for k, v in d.items() if str(k).startswith("mlflow.") and v is not None}
    rest = safe_params({k: v for k, v in d.items() if not str(k).startswith("mlflow.")}, limit=MAX_TAG_VAL_LENGTH)
    return {**rest, **system}


def source_tags(entry_point: str) -> dict[str, str]:
    """MLflow's own source tags for a run started by econ-ray: the command (``mlflow.source.name``),
    ``LOCAL`` as its type, the user, the git commit of the econ-ray code that ran (when it runs from
    a git checkout) and econ-ray's version."""
    import getpass
    import subprocess

    from econ_ray._version import __version__

    tags = {
        "mlflow.source.name": entry_point,
        "mlflow.source.type": "LOCAL",
        "econ_ray.version": __version__,
    }
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        pass
    code = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return tags
    commit = out.stdout.strip()
    if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit):
        tags["mlflow.source.git.commit"] = commit
    return tags


def finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The entries of ``metrics`` that are finite numbers (bools count as 0/1), as floats."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (str, bytes)) or value is None:
            continue
        if not isinstance(value, numbers.Real):
            try:  # numpy scalars, 0-d tensors
                if getattr(value, "ndim", 0) != 0:
                    continue
                value = float(value)
            except (TypeError, ValueError):
                continue
        value = float(value)
        if math.isfinite(value):
            out[clean_key(key)] = value
    return out


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# Tracker


class MlflowTracker:
    """Parent run of a search and one nested child run per trial, written with explicit run ids.

    ``start_child`` is idempotent per trial id; ``resume_parent`` re-attaches to an existing
    parent (after a crash) and re-discovers its children, so a resumed search reuses them.
    """

    def __init__(self, uri: str, experiment: str) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment_name = experiment
        self.client: MlflowClient = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self._lock = threading.RLock()
        self._parent: str | None = None
        self._children: dict[str, str] = {}
        self._open_children: set[str] = set()  # re-found children still open (resume_parent)
        self._last_step: dict[str, int] = {}
        try:
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                try:
                    self.experiment_id = self.client.create_experiment(
                        experiment, artifact_location=self.default_artifact_location(experiment)
                    )
                except MlflowException as exc:  # created concurrently
                    exp = self.client.get_experiment_by_name(experiment)
                    if exp is None:
                        raise TrackingError(
                            f"cannot create MLflow experiment {experiment!r} at {redact_uri(uri)}: {exc.message}"
                        ) from None
                    self.experiment_id = exp.experiment_id
            else:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                self.experiment_id = exp.experiment_id
        except MlflowException as exc:
            raise TrackingError(f"MLflow store {redact_uri(uri)}: {exc.message}") from None

    def default_artifact_location(self, experiment: str) -> str | None:
        """``<db folder>/mlartifacts/<experiment>`` for a SQLite store; the server's default
        otherwise (None)."""
        db = sqlite_path(self.uri)
        if db is None:
            return None
        db = db if db.is_absolute() else Path.cwd() / db
        safe = re.sub(r"[^\w.\-]", "_", experiment) or "experiment"
        return (db.parent.resolve() / "mlartifacts" / safe).as_uri()

    # -- parent --------------------------------------------------------------------------------

    @property
    def parent_run_id(self) -> str | None:
        return self._parent

    def _need_parent(self) -> str:
        if self._parent is None:
            raise TrackingError("no parent run: call start_parent() or resume_parent() first")
        return self._parent

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in safe_params(params).items()]
        for chunk in _chunks(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=list(chunk))

    def start_parent(self, run_name: str, *, params: Mapping[str, Any], tags: Mapping[str, Any] | None = None) -> str:
        """Create the search's parent run (status RUNNING) and log ``params``; returns its id."""
        with self._lock:
            run = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={**_safe_tags(tags), ROLE_TAG: "search"}
            )
            self._parent = run.info.run_id
            self._children.clear()
            self._last_step.clear()
            self._log_params(self._parent, params)
            return self._parent

    def resume_parent(self, run_id: str, *, set_running: bool = True) -> None:
        """Re-attach to an existing parent run, set it RUNNING (unless ``set_running`` is False: an
        upload of operations kept during an outage) and re-discover its children."""
        from mlflow.exceptions import MlflowException

        with self._lock:
            try:
                run = self.client.get_run(run_id)
            except MlflowException as exc:
                raise TrackingError(f"cannot resume parent run {run_id}: {exc.message}") from None
            if run.info.experiment_id != self.experiment_id:
                raise TrackingError(
                    f"run {run_id} belongs to experiment {run.info.experiment_id}, "
                    f"not {self.experiment_name!r} ({self.experiment_id})"
                )
            if set_running:
                self.client.update_run(run_id, status="RUNNING")
            self._parent = run_id
            self._children.clear()
            self._open_children.clear()
            self._last_step.clear()
            for child in self._child_runs(run_id):
                trial = child.data.tags.get(TRIAL_TAG)
                if trial and trial not in self._children:
                    self._children[trial] = child.info.run_id
                    if child.info.status in OPEN_STATUSES:
                        self._open_children.add(trial)

    def _child_runs(self, parent: str) -> Iterator[Any]:
        """Every child run of ``parent`` in the store, page by page."""
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{PARENT_TAG}` = '{parent}'",
                max_results=1000,
                page_token=token,
            )
            yield from page
            token = page.token
            if not token:
                return

    def running_children(self) -> list[str]:
        """Trials whose child runs the store has as RUNNING or SCHEDULED now (asked of the store)."""
        return sorted(
            {
                c.data.tags[TRIAL_TAG]
                for c in self._child_runs(self._need_parent())
                if c.info.status in OPEN_STATUSES and c.data.tags.get(TRIAL_TAG)
            }
        )

    def log_parent_metrics(self, metrics: Mapping[str, Any], *, step: int | None = None) -> None:
        self._log_metrics(self._need_parent(), metrics, step=0 if step is None else int(step))

    def log_parent_artifacts(self, paths: Sequence[str | Path], *, artifact_path: str | None = None) -> None:
        """Upload files (or whole folders) to the parent run, under ``artifact_path``. Text files
        are uploaded as redacted copies (credential-like values and secret environment values
        replaced by ``***``); the files on disk are left as they are."""
        import shutil
        import tempfile

        parent = self._need_parent()
        for p in paths:
            p = Path(p)
            if not (p.is_dir() or p.is_file()):
                raise TrackingError(f"cannot log artifact {p}: no such file or folder")
            with tempfile.TemporaryDirectory(prefix="econ-ray-artifact-") as tmp:
                copy = Path(tmp) / p.name
                if p.is_dir():
                    shutil.copytree(p, copy)
                    redact_text_files(copy)
                    dest = f"{artifact_path}/{p.name}" if artifact_path else p.name
                    self.client.log_artifacts(parent, str(copy), dest)
                else:
                    shutil.copyfile(p, copy)
                    redact_text_files(tmp)
                    self.client.log_artifact(parent, str(copy), artifact_path)

    def end_parent(self, status: str = "FINISHED") -> None:
        with self._lock:
            self.client.set_terminated(self._need_parent(), status=_status(status))

    # -- children ------------------------------------------------------------------------------

    def child_id(self, trial_id: str) -> str | None:
        return self._children.get(str(trial_id))

    def open_children(self) -> list[str]:
        """Trials whose child runs were still open (RUNNING or SCHEDULED) when :meth:`resume_parent`
        re-found them: a driver killed between a trial's record and the end of its run leaves one."""
        return sorted(self._open_children)

    def _need_child(self, trial_id: str) -> str:
        run_id = self.child_id(trial_id)
        if run_id is None:
            raise TrackingError(f"no child run for trial {trial_id!r}: call start_child() first")
        return run_id

    def start_child(self, trial_id: str, *, params: Mapping[str, Any], tags: Mapping[str, Any] | None = None) -> str:
        """The child run of ``trial_id`` (nested under the parent), created on the first call."""
        trial_id = str(trial_id)
        with self._lock:
            parent = self._need_parent()
            if trial_id in self._children:
                return self._children[trial_id]
            run = self.client.create_run(
                self.experiment_id,
                run_name=trial_id,
                tags={**_safe_tags(tags), PARENT_TAG: parent, TRIAL_TAG: trial_id, ROLE_TAG: "trial"},
            )
            run_id = run.info.run_id
            self._children[trial_id] = run_id
        self._log_params(run_id, params)
        return run_id

    def _log_metrics(self, run_id: str, metrics: Mapping[str, Any], *, step: int) -> None:
        from mlflow.entities import Metric

        ts = _now_ms()
        items = [Metric(k, v, ts, step) for k, v in finite_metrics(metrics).items()]
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=list(chunk))

    def log_metrics(self, trial_id: str, metrics: Mapping[str, Any], *, step: int) -> None:
        """Log the finite numeric entries of ``metrics`` at ``step`` in the trial's child run."""
        run_id = self._need_child(trial_id)
        step = int(step)
        self._last_step[str(trial_id)] = max(step, self._last_step.get(str(trial_id), step))
        self._log_metrics(run_id, metrics, step=step)

    def log_series(self, trial_id: str, key: str, values: Sequence[float], *, start_step: int = 0) -> None:
        """Log ``values[i]`` as metric ``key`` at step ``start_step + i`` (non-finite skipped)."""
        from mlflow.entities import Metric

        run_id = self._need_child(trial_id)
        key = clean_key(key)
        ts = _now_ms()
        items = []
        for i, v in enumerate(values):
            f = finite_metrics({key: v})
            if f:
                items.append(Metric(key, f[key], ts, int(start_step) + i))
        for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=list(chunk))

    def finish_child(
        self,
        trial_id: str,
        *,
        status: str = "FINISHED",
        metrics: Mapping[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        """Log final ``metrics`` (at the trial's last logged step, so they show as the latest
        values), tag ``failure_reason`` when given, and end the child run with ``status``."""
        status = _status(status)
        run_id = self._need_child(trial_id)
        if metrics:
            self._log_metrics(run_id, metrics, step=self._last_step.get(str(trial_id), 0))
        if reason:
            text = str(reason)
            text = redact(text)
            self.client.set_tag(run_id, FAILURE_TAG, text[:MAX_TAG_VAL_LENGTH])
        self.client.set_terminated(run_id, status=status)


def _status(status: str) -> str:
    s = str(status).upper()
    if s not in STATUSES:
        raise TrackingError(f"run status must be one of {', '.join(STATUSES)} (got {status!r})")
    return s
