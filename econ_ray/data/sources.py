"""Load a task's text examples from a built-in generator, the Hugging Face hub or a local file.

``load_task(source, ...)`` (``load_task_for(cfg.data, seed=...)`` from a run config) returns ``TextSplits``: train / validation / heldout lists of
``{"text", "text_pair", "label"}`` dicts (``{"text"}`` only for language modelling). The heldout
split is carved from the shuffled training split and is never trained on; the constrained
objective measures CE on it.

Every failure is a ``DataError`` whose message starts with ``data.source '<source>':`` and names
the missing file, split or column, so a config typo is fixed without reading a traceback.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from econ_ray.data import builtin

if TYPE_CHECKING:
    from econ_ray.config.schema import DataConfig

TaskKind = Literal["classification", "regression", "lm"]
TASK_KINDS: tuple[str, ...] = ("classification", "regression", "lm")
Example = dict[str, Any]

# Primary metric per kind for local files (hub and builtin tasks name their own).
DEFAULT_METRIC = {"classification": "accuracy", "regression": "pearson", "lm": "perplexity"}
LOCAL_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")
# Local files have no validation split of their own; this share (seeded) becomes one.
LOCAL_VALIDATION_FRACTION = 0.1
BUILTIN_PREFIX = "builtin:"

# Separate random streams for the different shuffles, so e.g. eval_size never changes train.
_STREAM_TRAIN, _STREAM_VALIDATION, _STREAM_LOCAL_SPLIT = 10, 11, 12


class DataError(ValueError):
    """A data source that cannot be used; the message names the source and what is wrong."""

    def __init__(self, source: str, message: str, field: str = "data.source") -> None:
        self.source, self.message, self.field = source, message, field
        super().__init__(f"{field} '{source}': {message}")


@dataclass(frozen=True)
class TaskSpec:
    """What the model is trained for: its kind, label count and primary metric."""

    name: str  # "builtin:majority", "glue/mnli", "wikitext-103", "path/to/file.csv"
    kind: TaskKind
    num_labels: int  # classes for classification, 1 for regression, 0 for lm
    metric_name: str  # "accuracy", "mcc", "pearson" or "perplexity"


@dataclass
class TextSplits:
    """Text examples of one task; ``heldout`` is disjoint from ``train`` and never trained on."""

    task: TaskSpec
    train: list[Example]
    validation: list[Example]
    heldout: list[Example]


@dataclass(frozen=True)
class HubTask:
    """A task on the Hugging Face hub: ``load_dataset(path, config)`` and the columns we read."""

    path: str
    config: str
    kind: TaskKind
    num_labels: int
    metric_name: str
    text: str
    text_pair: str | None = None
    label: str | None = "label"
    validation_split: str = "validation"


# Owner-qualified ids: the bare "glue" / "wikitext" names are only hub redirects to these.
HUB_TASKS: dict[str, HubTask] = {
    "glue/mnli": HubTask(
        "nyu-mll/glue",
        "mnli",
        "classification",
        3,
        "accuracy",
        "premise",
        "hypothesis",
        validation_split="validation_matched",
    ),
    "glue/sst2": HubTask("nyu-mll/glue", "sst2", "classification", 2, "accuracy", "sentence"),
    "glue/cola": HubTask("nyu-mll/glue", "cola", "classification", 2, "mcc", "sentence"),
    "glue/stsb": HubTask("nyu-mll/glue", "stsb", "regression", 1, "pearson", "sentence1", "sentence2"),
    "glue/qnli": HubTask("nyu-mll/glue", "qnli", "classification", 2, "accuracy", "question", "sentence"),
    "glue/qqp": HubTask("nyu-mll/glue", "qqp", "classification", 2, "accuracy", "question1", "question2"),
    "glue/mrpc": HubTask("nyu-mll/glue", "mrpc", "classification", 2, "accuracy", "sentence1", "sentence2"),
    "glue/rte": HubTask("nyu-mll/glue", "rte", "classification", 2, "accuracy", "sentence1", "sentence2"),
    "wikitext-103": HubTask("Salesforce/wikitext", "wikitext-103-raw-v1", "lm", 0, "perplexity", "text", label=None),
    "wikitext-2": HubTask("Salesforce/wikitext", "wikitext-2-raw-v1", "lm", 0, "perplexity", "text", label=None),
}


def known_sources() -> str:
    """One line listing every non-file source, for error messages."""
    builtins = ", ".join(BUILTIN_PREFIX + n for n in builtin.BUILTIN_TASKS)
    return f"builtins: {builtins}; hub: {', '.join(HUB_TASKS)}; or a {'/'.join(LOCAL_SUFFIXES)} file"


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _missing_column(column: str, available: Sequence[str]) -> str:
    return f"column '{column}' not found (columns: {', '.join(map(str, available))})"


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _shuffled(rows: list[Example], seed: int, stream: int, cap: int | None = None) -> list[Example]:
    order = _rng(seed, stream).permutation(len(rows))
    if cap is not None:
        order = order[:cap]
    return [rows[i] for i in order]


def _carve(pool: list[Example], n: int) -> tuple[list[Example], list[Example]]:
    """(held-out, train) from a shuffled pool: the first ``n`` rows, or, where rows carry a ``group``
    (a document several rows come from), whole groups in the order they first appear until ``n`` rows
    or more are held out, so no held-out row shares its document with a training row."""
    if not any("group" in ex for ex in pool):
        return pool[:n], pool[n:]
    sizes = Counter(ex.get("group") for ex in pool)
    chosen: set[Any] = set()
    count = 0
    for ex in pool:
        if count >= n:
            break
        g = ex.get("group")
        if g not in chosen:
            chosen.add(g)
            count += sizes[g]
    heldout = [ex for ex in pool if ex.get("group") in chosen]
    train = [ex for ex in pool if ex.get("group") not in chosen]
    if not train:  # one group holds every row: fall back to rows
        return pool[:n], pool[n:]
    return heldout, train


def _make_example(text: Any, pair: Any, label: Any, kind: str) -> Example:
    if kind == "lm":
        return {"text": text}
    return {"text": text, "text_pair": pair, "label": label}


# ---------------------------------------------------------------------------------------------
# Built-in generated tasks
# ---------------------------------------------------------------------------------------------


def _load_builtin(
    source: str, seed: int, options: Mapping[str, Any] | None
) -> tuple[TaskSpec, list[Example], list[Example]]:
    name = source[len(BUILTIN_PREFIX) :]
    if name not in builtin.BUILTIN_TASKS:
        raise DataError(source, f"unknown builtin task '{name}' ({known_sources()})")
    spec = builtin.BUILTIN_TASKS[name]
    try:
        train, validation = builtin.generate(name, seed, options)
    except ValueError as exc:
        raise DataError(source, str(exc)) from exc
    return TaskSpec(source, spec.kind, spec.num_labels, spec.metric_name), train, validation  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Hugging Face hub
# ---------------------------------------------------------------------------------------------


def _hub_rows(
    source: str, split: Any, split_name: str, task: HubTask, columns: Mapping[str, str | None]
) -> list[Example]:
    """Rows of one hub split as example dicts (columnar read: fast even for 400k rows)."""
    available = list(split.column_names)
    wanted = {role: col for role, col in columns.items() if col is not None}
    for col in wanted.values():
        if col not in available:
            raise DataError(source, f"split '{split_name}': {_missing_column(col, available)}")
    data = split.select_columns(sorted(set(wanted.values()))).to_dict()
    texts = data[wanted["text"]]
    pairs = data[wanted["text_pair"]] if "text_pair" in wanted else [None] * len(texts)
    labels = data[wanted["label"]] if "label" in wanted else [None] * len(texts)
    rows: list[Example] = []
    for t, p, y in zip(texts, pairs, labels):
        if task.kind == "lm":
            # wikitext keeps blank separator lines; they carry no tokens to predict.
            if t is None or not t.strip():
                continue
            rows.append({"text": t.strip()})
            continue
        if task.kind == "classification" and (y is None or int(y) < 0):
            continue  # GLUE marks hidden (test) labels with -1
        label = float(y) if task.kind == "regression" else int(y)
        rows.append(_make_example(t, p, label, task.kind))
    return rows


def _load_hub(source: str, columns: Mapping[str, str] | None) -> tuple[TaskSpec, list[Example], list[Example]]:
    task = HUB_TASKS[source]
    mapping: dict[str, str | None] = {"text": task.text, "text_pair": task.text_pair, "label": task.label}
    mapping.update(columns or {})
    try:
        import datasets  # heavy import, and only hub tasks need it

        dd = datasets.load_dataset(task.path, task.config)
    except Exception as exc:  # noqa: BLE001 - whatever the loader raised (offline, unknown name), reported with it
        raise DataError(
            source, f"could not be loaded (load_dataset('{task.path}', '{task.config}')): {_first_line(exc)}"
        ) from exc
    splits = {}
    for split_name in ("train", task.validation_split):
        if split_name not in dd:
            raise DataError(source, f"split '{split_name}' not found (splits: {', '.join(map(str, dd))})")
        splits[split_name] = _hub_rows(source, dd[split_name], split_name, task, mapping)
    spec = TaskSpec(source, task.kind, task.num_labels, task.metric_name)
    return spec, splits["train"], splits[task.validation_split]


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------


def _read_table(source: str, path: Path, nrows: int | None = None) -> Any:
    """The file as a pandas DataFrame (csv/tsv/json/jsonl/parquet); with ``nrows``, only the first
    rows of a csv/tsv/jsonl file are read (json and parquet are read whole)."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            # keep_default_na=False: the sentence "NA" or "null" is text, not a missing value;
            # only truly empty cells become NaN (and are rejected below for labels).
            return pd.read_csv(
                path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False, na_values=[""], nrows=nrows
            )
        # dtype=False: keep values as written (a sentence like "2020-01-01" stays text).
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False, nrows=nrows)
        if suffix == ".json":
            try:
                return pd.read_json(path, dtype=False)
            except ValueError:
                return pd.read_json(path, lines=True, dtype=False)  # JSON lines saved with a .json name
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(source, "file is empty") from exc
    except Exception as exc:  # noqa: BLE001 - parse errors of any reader, reported with the file name
        raise DataError(source, f"could not be read: {_first_line(exc)}") from exc


def _read_text(source: str, path: Path) -> str:
    """A .txt corpus as text: UTF-8, no NUL bytes, or one :class:`DataError` saying which byte."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise DataError(source, f"not a text file (not UTF-8: byte {exc.start} is 0x{byte:02x})") from None
    except OSError as exc:
        raise DataError(source, f"could not be read: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise DataError(source, "not a text file (it holds NUL bytes)")
    return text


def _require_rows(source: str, df: Any) -> None:
    """A table with no rows is an error that names its header, if it has one."""
    if len(df) == 0:
        header = f" (header only: {', '.join(map(str, df.columns))})" if len(df.columns) else ""
        raise DataError(source, f"file is empty{header}")


def _require_lm_kind(source: str, kind: str | None) -> None:
    if kind not in (None, "lm"):
        raise DataError(source, f"a .txt file is a language-modelling corpus (one example per line), not {kind}")


def _infer_kind(source: str, labels: Any, kind: str | None) -> str:
    import pandas as pd

    if kind is not None:
        return kind
    if pd.api.types.is_bool_dtype(labels) or pd.api.types.is_integer_dtype(labels):
        return "classification"
    if pd.api.types.is_float_dtype(labels):
        return "regression"
    if pd.api.types.is_object_dtype(labels) or pd.api.types.is_string_dtype(labels):
        return "classification"  # string class names, mapped to ids in sorted order
    raise DataError(source, f"cannot infer the task kind from label dtype {labels.dtype}; set data.kind")


def _label_names(labels: Any) -> list[str] | None:
    """The sorted class names of a label column of strings; ``None`` for numeric labels."""
    import pandas as pd

    if pd.api.types.is_object_dtype(labels) or pd.api.types.is_string_dtype(labels):
        values = labels.tolist()
        if all(isinstance(v, str) for v in values):
            return sorted(set(values))
    return None


def _class_ids(source: str, column: str, labels: Any, names: Sequence[str] | None = None) -> tuple[list[int], int]:
    """Integer class ids and their count. Integers are kept (num_labels = max + 1); strings are
    numbered in sorted order, so the mapping is deterministic (``names``: the classes of the
    training and validation files together, so both number them alike)."""
    own = _label_names(labels)
    if own is not None:
        index = {n: i for i, n in enumerate(names if names is not None else own)}
        return [index[v] for v in labels.tolist()], len(index)
    values = labels.tolist()
    ids: list[int] = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise DataError(source, f"column '{column}': classification label {v!r} is not an integer") from None
        if not f.is_integer() or f < 0:
            raise DataError(source, f"column '{column}': classification label {v!r} is not a non-negative integer")
        ids.append(int(f))
    return ids, max(ids) + 1


def _local_rows(
    source: str,
    path: Path,
    columns: Mapping[str, str] | None,
    kind: str | None,
    field: str = "data.source",
    df: Any = None,
    names: Sequence[str] | None = None,
) -> tuple[TaskSpec, list[Example]]:
    """A local file's examples (``df``: its table, already read; ``names``: class names shared with
    another file of the same task)."""
    try:
        return _file_rows(source, path, columns, kind, df, names)
    except DataError as exc:
        if field == exc.field:
            raise
        raise DataError(exc.source, exc.message, field) from None


def _file_rows(
    source: str,
    path: Path,
    columns: Mapping[str, str] | None,
    kind: str | None,
    df: Any,
    names: Sequence[str] | None,
) -> tuple[TaskSpec, list[Example]]:
    if path.suffix.lower() == ".txt":
        _require_lm_kind(source, kind)
        lines = [ln.strip() for ln in _read_text(source, path).splitlines()]
        rows = [{"text": ln} for ln in lines if ln]
        if not rows:
            raise DataError(source, "file is empty (no non-empty lines)")
        return TaskSpec(source, "lm", 0, "perplexity"), rows

    if df is None:
        df = _read_table(source, path)
    _require_rows(source, df)
    available = [str(c) for c in df.columns]
    cols = {"text": "text", "label": "label", **(columns or {})}
    # text_pair is optional: used when mapped, or when the file simply has a "text_pair" column.
    if "text_pair" not in cols and "text_pair" in available:
        cols["text_pair"] = "text_pair"
    if cols["text"] not in available:
        raise DataError(source, _missing_column(cols["text"], available))
    if "text_pair" in cols and cols["text_pair"] not in available:
        raise DataError(source, _missing_column(cols["text_pair"], available))
    has_label = cols["label"] in available
    if kind is None and not has_label:
        kind = "lm"  # no labels at all: a corpus
    if kind != "lm" and not has_label:
        raise DataError(source, _missing_column(cols["label"], available))
    kind = _infer_kind(source, df[cols["label"]], kind) if kind != "lm" else "lm"

    texts = ["" if _is_missing(t) else str(t) for t in df[cols["text"]].tolist()]
    if kind == "lm":
        rows = [{"text": t.strip()} for t in texts if t.strip()]
        if not rows:
            raise DataError(source, f"column '{cols['text']}' holds no non-empty text")
        return TaskSpec(source, "lm", 0, "perplexity"), rows

    pairs: list[Any] = [None] * len(texts)
    if "text_pair" in cols:
        pairs = ["" if _is_missing(t) else str(t) for t in df[cols["text_pair"]].tolist()]
    raw = df[cols["label"]]
    missing = [i for i, v in enumerate(raw.tolist()) if _is_missing(v)]
    if missing:
        raise DataError(
            source, f"column '{cols['label']}' has {len(missing)} missing value(s) (first at row {missing[0]})"
        )
    labels: list[int] | list[float]
    if kind == "classification":
        labels, num_labels = _class_ids(source, cols["label"], raw, names)
    else:
        try:
            labels = [float(v) for v in raw.tolist()]
        except (TypeError, ValueError) as exc:
            raise DataError(source, f"column '{cols['label']}': regression labels must be numbers ({exc})") from None
        num_labels = 1
    rows = [_make_example(t, p, y, kind) for t, p, y in zip(texts, pairs, labels)]
    return TaskSpec(source, kind, num_labels, DEFAULT_METRIC[kind]), rows  # type: ignore[arg-type]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _local_file(source: str, field: str = "data.source") -> Path:
    """The path of a local data file that exists and has a supported suffix."""
    path = Path(source).expanduser()
    if path.is_dir():
        raise DataError(source, f"is a directory, not a file ({known_sources()})", field)
    if not path.is_file():
        raise DataError(source, "file not found", field)
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        raise DataError(
            source, f"unsupported file type '{path.suffix}' (supported: {', '.join(LOCAL_SUFFIXES)})", field
        )
    if path.stat().st_size == 0:
        raise DataError(source, "file is empty", field)
    return path


def _label_column(columns: Mapping[str, str] | None) -> str:
    return {"label": "label", **(columns or {})}["label"]


def _paired_tables(
    source: str, path: Path, validation: str, vpath: Path, columns: Mapping[str, str] | None, nrows: int | None = None
) -> tuple[Any, Any, list[str] | None]:
    """Both tables of a task with its own validation file, and the class names they share: the
    union of both files' names when both label columns hold names (so a class only the validation
    file has still gets an id); one file with names and the other with numbers is an error."""
    df = _read_table(source, path, nrows=nrows)
    try:
        vdf = _read_table(validation, vpath, nrows=nrows)
    except DataError as exc:
        raise DataError(validation, exc.message, "data.validation") from None
    col = _label_column(columns)
    if col not in df.columns or col not in vdf.columns:
        return df, vdf, None
    a, b = _label_names(df[col]), _label_names(vdf[col])
    if (a is None) != (b is None):
        named, numbered = (source, validation) if a is not None else (validation, source)
        raise DataError(
            validation,
            f"column '{col}' holds class names in {named} but numbers in {numbered}; "
            "both files must label classes the same way",
            "data.validation",
        )
    return df, vdf, (sorted(set(a) | set(b)) if a is not None and b is not None else None)


def _load_local(
    source: str,
    path: Path,
    columns: Mapping[str, str] | None,
    kind: str | None,
    seed: int,
    validation: str | None = None,
) -> tuple[TaskSpec, list[Example], list[Example]]:
    if validation is not None:
        vpath = _local_file(validation, "data.validation")
        if (path.suffix.lower() == ".txt") != (vpath.suffix.lower() == ".txt"):
            raise DataError(validation, "a .txt corpus and a table cannot be one task's two splits", "data.validation")
        df = vdf = names = None
        if path.suffix.lower() != ".txt":
            df, vdf, names = _paired_tables(source, path, validation, vpath, columns)
        spec, train = _local_rows(source, path, columns, kind, df=df, names=names)
        vspec, val = _local_rows(validation, vpath, columns, spec.kind, "data.validation", vdf, names)
        num_labels = max(spec.num_labels, vspec.num_labels)
        return TaskSpec(source, spec.kind, num_labels, spec.metric_name), train, val
    spec, rows = _local_rows(source, path, columns, kind)
    if len(rows) < 3:
        raise DataError(source, f"only {len(rows)} example(s); need at least 3 (train, validation, heldout)")
    rows = _shuffled(rows, seed, _STREAM_LOCAL_SPLIT)
    n_val = max(1, round(LOCAL_VALIDATION_FRACTION * len(rows)))
    return spec, rows[n_val:], rows[:n_val]


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def load_task(
    source: str,
    *,
    columns: dict[str, str] | None = None,
    kind: TaskKind | None = None,
    train_size: int | None = None,
    eval_size: int | None = None,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    builtin_options: dict | None = None,
    validation: str | None = None,
) -> TextSplits:
    """Load ``source`` and split it into train / validation / heldout.

    ``source`` is ``builtin:<name>``, a hub name from ``HUB_TASKS`` or a path to a local file
    (``columns`` maps ``text`` / ``text_pair`` / ``label`` to its column names; ``kind`` overrides
    the inferred task kind; 10 % of the rows, seeded, become validation, unless ``validation`` names
    the task's own validation file, read with the same columns).

    The training split is shuffled with ``seed`` and capped at ``train_size``; ``heldout`` is the
    first ``heldout_fraction`` of that (at least one example) and is removed from ``train``, so
    ``len(train) + len(heldout) <= train_size``. ``validation`` is shuffled and capped at
    ``eval_size``; so is ``heldout``, because it is evaluated in full during training.
    """
    if kind is not None and kind not in TASK_KINDS:
        raise DataError(source, f"kind '{kind}' is not one of {', '.join(TASK_KINDS)}")
    if not 0.0 < heldout_fraction < 1.0:
        raise DataError(source, f"heldout_fraction must be in (0, 1) (got {heldout_fraction})")
    for name, cap in (("train_size", train_size), ("eval_size", eval_size)):
        if cap is not None and cap < 1:
            raise DataError(source, f"{name} must be >= 1 (got {cap})")
    if columns:
        bad = sorted(set(columns) - {"text", "text_pair", "label"})
        if bad:
            raise DataError(source, f"unknown column role(s) {', '.join(bad)}; expected text, text_pair, label")

    if validation is not None and (source.startswith(BUILTIN_PREFIX) or source in HUB_TASKS):
        raise DataError(
            validation, f"a validation file goes with a local data.source; {source} has its own", "data.validation"
        )
    path = Path(source).expanduser()
    if source.startswith(BUILTIN_PREFIX):
        spec, train, validation_rows = _load_builtin(source, seed, builtin_options)
    elif source in HUB_TASKS:
        spec, train, validation_rows = _load_hub(source, columns)
    else:
        if path.is_file():
            if path.suffix.lower() not in LOCAL_SUFFIXES:
                raise DataError(
                    source, f"unsupported file type '{path.suffix}' (supported: {', '.join(LOCAL_SUFFIXES)})"
                )
            spec, train, validation_rows = _load_local(source, path, columns, kind, seed, validation)
        elif path.is_dir():
            raise DataError(source, f"is a directory, not a file ({known_sources()})")
        elif path.suffix.lower() in LOCAL_SUFFIXES:
            raise DataError(source, f"file not found ({known_sources()})")
        else:
            # Hub names contain "/" too, so without a file suffix this is most likely a typo'd name.
            names = [BUILTIN_PREFIX + n for n in builtin.BUILTIN_TASKS] + list(HUB_TASKS)
            close = difflib.get_close_matches(source, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DataError(source, f"unknown source{hint} ({known_sources()})")
    if kind is not None and kind != spec.kind:
        raise DataError(source, f"kind '{kind}' was requested but this task is {spec.kind}")

    pool = _shuffled(train, seed, _STREAM_TRAIN, train_size)
    if len(pool) < 2:
        raise DataError(source, f"the training split has {len(pool)} example(s); need at least 2 (train + heldout)")
    n_heldout = min(len(pool) - 1, max(1, round(heldout_fraction * len(pool))))
    heldout, train = _carve(pool, n_heldout)
    if eval_size is not None:
        heldout = heldout[:eval_size]
    val = _shuffled(validation_rows, seed, _STREAM_VALIDATION, eval_size)
    if not val:
        raise DataError(source, "the validation split is empty")
    return TextSplits(spec, train, val, heldout)


def load_task_for(data: DataConfig, *, seed: int) -> TextSplits:
    """:func:`load_task` with every option taken from a run's ``data`` section (``RunConfig.data``);
    ``seed`` is the run's ``training.seed``."""
    return load_task(
        data.source,
        columns=data.columns,
        kind=data.kind,
        train_size=data.train_size,
        eval_size=data.eval_size,
        heldout_fraction=data.heldout_fraction,
        seed=seed,
        builtin_options=data.builtin,
        validation=data.validation,
    )


# ---------------------------------------------------------------------------------------------
# Pre-flight: is the source usable? (cheap: reads a local file's header, never a whole dataset)
# ---------------------------------------------------------------------------------------------

_PEEK_ROWS = 20


def check_source(
    source: str,
    *,
    columns: Mapping[str, str] | None = None,
    kind: TaskKind | None = None,
    builtin_options: Mapping[str, Any] | None = None,
    validation: str | None = None,
) -> TaskKind:
    """Raise :class:`DataError` if ``source`` cannot be loaded as configured; return its task kind.

    The same rules as :func:`load_task` without loading the data: a built-in's name and options, a
    hub task's name, a local file's existence, type, emptiness and columns (from its first rows),
    and the same for ``validation`` (its error names ``data.validation``), which must hold the same
    kind of task. A hub task is not downloaded here (that needs the network); its name is checked.
    """
    found = _check_one_source(source, columns, kind, builtin_options)
    if validation is None:
        return found
    if source.startswith(BUILTIN_PREFIX) or source in HUB_TASKS:
        raise DataError(
            validation, f"a validation file goes with a local data.source; {source} has its own", "data.validation"
        )
    vpath = _local_file(validation, "data.validation")
    if (Path(source).suffix.lower() == ".txt") != (vpath.suffix.lower() == ".txt"):
        raise DataError(validation, "a .txt corpus and a table cannot be one task's two splits", "data.validation")
    try:
        vfound = _check_local_columns(validation, vpath, columns, kind)
        if vfound == "lm" and found != "lm":
            _check_local_columns(validation, vpath, columns, found)  # names the missing label column
    except DataError as exc:
        raise DataError(validation, exc.message, "data.validation") from None
    if vfound != found:
        raise DataError(
            validation, f"reads as a {vfound} task but data.source '{source}' is {found}", "data.validation"
        )
    if found == "classification":
        _paired_tables(source, Path(source).expanduser(), validation, vpath, columns, nrows=_PEEK_ROWS)
    return found


def _check_one_source(
    source: str, columns: Mapping[str, str] | None, kind: TaskKind | None, builtin_options: Mapping[str, Any] | None
) -> TaskKind:
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX) :]
        if name not in builtin.BUILTIN_TASKS:
            close = difflib.get_close_matches(name, list(builtin.BUILTIN_TASKS), n=1)
            hint = f"did you mean '{BUILTIN_PREFIX}{close[0]}'? " if close else ""
            raise DataError(source, f"unknown builtin task '{name}' ({hint}{known_sources()})")
        try:
            builtin.BUILTIN_TASKS[name].options(builtin_options)
        except ValueError as exc:
            raise DataError(source, f"data.builtin: {exc}") from None
        found: str = builtin.BUILTIN_TASKS[name].kind
    elif source in HUB_TASKS:
        found = HUB_TASKS[source].kind
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            raise DataError(source, f"is a directory, not a file ({known_sources()})")
        if not path.is_file():
            if path.suffix.lower() in LOCAL_SUFFIXES:
                raise DataError(source, f"file not found ({known_sources()})")
            names = [BUILTIN_PREFIX + n for n in builtin.BUILTIN_TASKS] + list(HUB_TASKS)
            close = difflib.get_close_matches(source, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DataError(source, f"unknown source{hint} ({known_sources()})")
        if path.suffix.lower() not in LOCAL_SUFFIXES:
            raise DataError(source, f"unsupported file type '{path.suffix}' (supported: {', '.join(LOCAL_SUFFIXES)})")
        if path.stat().st_size == 0:
            raise DataError(source, "file is empty")
        found = _check_local_columns(source, path, columns, kind)
    if kind is not None and kind != found:
        raise DataError(source, f"kind '{kind}' was requested but this task is {found}")
    return found  # type: ignore[return-value]


def _check_local_columns(source: str, path: Path, columns: Mapping[str, str] | None, kind: str | None) -> str:
    """The task kind of a local file whose columns match the config (the rules of ``_local_rows``)."""
    if path.suffix.lower() == ".txt":
        _require_lm_kind(source, kind)
        if not _read_text(source, path).strip():
            raise DataError(source, "file is empty (no non-empty lines)")
        return "lm"
    df = _read_table(source, path, nrows=_PEEK_ROWS)
    _require_rows(source, df)
    available = [str(c) for c in df.columns]
    cols = {"text": "text", "label": "label", **(columns or {})}
    if cols["text"] not in available:
        raise DataError(source, _missing_column(cols["text"], available))
    if "text_pair" in (columns or {}) and cols["text_pair"] not in available:
        raise DataError(source, _missing_column(cols["text_pair"], available))
    has_label = cols["label"] in available
    if kind == "lm" or (kind is None and not has_label):
        return "lm"
    if not has_label:
        raise DataError(source, _missing_column(cols["label"], available))
    found = _infer_kind(source, df[cols["label"]], kind)
    _check_label_values(source, cols["label"], df[cols["label"]], found, declared=kind is not None)
    return found


def _check_label_values(source: str, column: str, labels: Any, kind: str, declared: bool) -> None:
    """Labels that the task kind cannot take (read from the file's first rows): fractional numbers for
    a classification task, class names for a regression task; the message names data.kind when the
    kind was declared rather than inferred."""
    values = [v for v in labels.tolist() if not _is_missing(v)]
    why = "data.kind is" if declared else "the task reads as"
    if kind == "classification" and _label_names(labels) is None:
        bad = [v for v in values if not _is_class_id(v)]
        if bad:
            raise DataError(
                source,
                f"column '{column}' holds numbers like {bad[0]!r} but {why} classification (classes are "
                "non-negative integers or names); set data.kind: regression",
            )
    if kind == "regression":
        bad = [v for v in values if not _is_number(v)]
        if bad:
            raise DataError(
                source,
                f"column '{column}' holds class names like {bad[0]!r} but {why} regression (labels are "
                "numbers); set data.kind: classification",
            )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_class_id(value: Any) -> bool:
    if not _is_number(value):
        return False
    f = float(value)
    return f.is_integer() and f >= 0


def describe_source(
    source: str,
    *,
    columns: Mapping[str, str] | None = None,
    kind: TaskKind | None = None,
    builtin_options: Mapping[str, Any] | None = None,
    validation: str | None = None,
) -> TaskSpec:
    """The :class:`TaskSpec` that :func:`load_task` will return for ``source``, without loading it:
    the task kind (inferred for a local file, as the loader infers it), its label count and its
    primary metric. Raises :class:`DataError` like :func:`check_source`.

    A local classification file's label column is read whole (its classes are the label count);
    everything else comes from a built-in's or hub task's table or from the first rows of the file.
    """
    found = check_source(source, columns=columns, kind=kind, builtin_options=builtin_options, validation=validation)
    if source.startswith(BUILTIN_PREFIX):
        b = builtin.BUILTIN_TASKS[source[len(BUILTIN_PREFIX) :]]
        return TaskSpec(source, found, b.num_labels, b.metric_name)
    if source in HUB_TASKS:
        h = HUB_TASKS[source]
        return TaskSpec(source, found, h.num_labels, h.metric_name)
    if found == "lm":
        return TaskSpec(source, "lm", 0, DEFAULT_METRIC["lm"])
    # a labelled table: the kind and the classes of the whole label column, as the loader sees them
    col = _label_column(columns)
    path = Path(source).expanduser()
    if validation is None:
        labels = _read_table(source, path)[col]
        found = _infer_kind(source, labels, kind)  # type: ignore[assignment]
        num_labels = _class_ids(source, col, labels)[1] if found == "classification" else 1
        return TaskSpec(source, found, num_labels, DEFAULT_METRIC[found])
    df, vdf, names = _paired_tables(source, path, validation, Path(validation).expanduser(), columns)
    found = _infer_kind(source, df[col], kind)  # type: ignore[assignment]
    num_labels = 1
    if found == "classification":
        num_labels = max(
            _class_ids(source, col, df[col], names)[1],
            _local_rows(validation, Path(validation), columns, found, "data.validation", vdf, names)[0].num_labels,
        )
    return TaskSpec(source, found, num_labels, DEFAULT_METRIC[found])
