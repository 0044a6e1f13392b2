"""Malformed input is rejected before any work: exit 2, one stderr line naming the file, the field and
what was expected, and nothing started (no Ray session, no MLflow store or run, no run folder).

Every case goes through the real CLI entry point: ``econ_ray.cli.main.main(argv)`` in-process (the
function the ``econ-ray`` console script calls) for speed, and a few cases also as a real subprocess
of the installed ``econ-ray`` script. The environment points Ray's temp folder (``RAY_TMPDIR``), the
MLflow store (a SQLite file in an existing folder) and the run root (``ECON_RAY_RUN_ROOT``) into
``tmp_path``, so "nothing started" is checked on this test's own paths, not on a machine-wide
``/tmp/ray`` other sessions share.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from econ_ray.cli.main import main

# A valid search file that fits any machine (one trial at a time, one worker of half a CPU).
BASE: dict[str, Any] = {
    "name": "malformed",
    "model": {"name": "tiny-bert", "tiny": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}},
    "data": {"source": "builtin:majority", "max_length": 32, "builtin": {"n_train": 50, "n_validation": 20}},
    "attention": {"mode": "gates"},
    "objective": {"kind": "penalised", "lam": 0.1, "dense_steps": 2},
    "training": {"max_steps": 2, "batch_size": 8, "eval_every": 2},
    "search": {
        "trials": 1,
        "concurrency": 1,
        "sampler": "random",
        "space": {"lam": {"low": 0.1, "high": 1.0, "log": True}},
    },
    "distributed": {"workers": 1, "cpus_per_worker": 0.5, "deepspeed": False},
}


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parts, last = dotted.split(".")
    for p in parts:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value


_DELETE = object()
N_CPU = os.cpu_count() or 1


def _n_gpu() -> int:
    import torch

    return torch.cuda.device_count()


@dataclass
class Case:
    """One malformed input: how the file (and CLI/env) differ from BASE, and what the error names."""

    field: str  # must appear in the error line
    expected: str  # what was expected, must appear in the error line
    changes: dict[str, Any] = field(default_factory=dict)  # dotted key -> value (callable(tmp) -> value)
    raw: str | bytes | None = None  # file text (or bytes) instead of BASE + changes
    verbs: tuple[str, ...] = ("search",)
    args: tuple[str, ...] = ()  # extra CLI args; "{tmp}" is replaced by tmp_path
    env: dict[str, str] = field(default_factory=dict)  # "{tmp}" replaced
    setup: Callable[[Path], None] | None = None  # makes files the case needs
    root_skip: bool = False  # permissions do not bind root


def _write(rel: str, text: str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    return make


def _write_bytes(rel: str, data: bytes) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / rel).write_bytes(data)

    return make


# Bytes no UTF-8 text holds (0xff never starts a character), as from a binary file saved as .yaml
BINARY = bytes(range(256))[::-1] * 4


def _readonly_dir(tmp: Path) -> None:
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)


def _t5_folder(tmp: Path) -> None:
    (tmp / "t5").mkdir()
    (tmp / "t5" / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 16}))


CONFIG_VERBS = ("search", "train", "validate")

CASES: dict[str, Case] = {
    # --- the file itself
    "bad YAML syntax": Case(
        "line 2", "not valid YAML", raw="name: x\ndata: source: builtin:majority\n", verbs=CONFIG_VERBS
    ),
    "search-space file is binary (not UTF-8)": Case(
        "", "not a text file (not UTF-8", raw=BINARY, verbs=(*CONFIG_VERBS, "topk")
    ),
    "search-space file holds NUL bytes": Case(
        "", "not a text file (it holds NUL bytes)", raw=b"name: x\x00\x00\n", verbs=CONFIG_VERBS
    ),
    "top level is a list": Case("", "expected a mapping at the top level", raw="- a\n- b\n", verbs=CONFIG_VERBS),
    "empty file (nothing to search)": Case("search.space", "expected a range for lam", raw=""),
    "config file missing": Case("", "file not found", raw=None, args=("--missing-file",), verbs=CONFIG_VERBS),
    # --- schema: keys, types, ranges
    "unknown top-level key": Case(
        "objectve", "did you mean 'objective'", changes={"objectve": {"lam": 1}}, verbs=CONFIG_VERBS
    ),
    "unknown nested key": Case(
        "objective.lamda", "did you mean 'lam'", changes={"objective.lamda": 1.0}, verbs=CONFIG_VERBS
    ),
    "wrong type": Case(
        "training.batch_size", "valid integer", changes={"training.batch_size": "big"}, verbs=CONFIG_VERBS
    ),
    "lambda range on log scale with low 0": Case(
        "search.space.lam",
        "log scale needs low > 0",
        changes={"search.space.lam": {"low": 0.0, "high": 1.0, "log": True}},
    ),
    "lambda range on log scale with low < 0": Case(
        "search.space.lam",
        "log scale needs low > 0",
        changes={"search.space.lam": {"low": -1.0, "high": 1.0, "log": True}},
    ),
    "negative lambda": Case(
        "objective.lam", "greater than or equal to 0", changes={"objective.lam": -1.0}, verbs=CONFIG_VERBS
    ),
    "reversed range": Case(
        "search.space.alpha", "reversed range", changes={"search.space.alpha": {"low": 1.0, "high": 0.1}}
    ),
    "alpha < 0": Case(
        "objective.alpha", "greater than or equal to 0", changes={"objective.alpha": -0.5}, verbs=CONFIG_VERBS
    ),
    "beta range below 0": Case(
        "search.space", "beta.low must be >= 0", changes={"search.space.beta": {"low": -0.5, "high": 1.0}}
    ),
    "tau <= 0": Case(
        "objective.tau",
        "greater than 0",
        changes={"objective.kind": "constrained", "objective.tau": 0.0},
        verbs=CONFIG_VERBS,
    ),
    "tau range with low <= 0": Case(
        "search.space", "tau.low must be > 0", changes={"search.space.tau": {"low": 0.0, "high": 1.0}}
    ),
    "constrained without a ceiling": Case(
        "objective", "needs tau or tau_rel", changes={"objective.kind": "constrained"}, verbs=CONFIG_VERBS
    ),
    "k larger than the sequence length": Case(
        "attention.k",
        "larger than data.max_length",
        changes={"attention.mode": "topk", "attention.k": 64},
        verbs=CONFIG_VERBS,
    ),
    "budget <= 0": Case(
        "attention.budget",
        "expected a number >= 1",
        changes={"attention.mode": "budget", "attention.budget": 0.0},
        verbs=CONFIG_VERBS,
    ),
    "budget below one edge per query with keep_strongest": Case(
        "attention.budget",
        "every query keeps at least its strongest edge in budget mode (with or without keep_strongest)",
        changes={"attention.mode": "budget", "attention.budget": 0.5, "attention.keep_strongest": True},
        verbs=CONFIG_VERBS,
    ),
    "budget flag below one edge per query": Case(
        "--budget",
        "expected numbers >= 1",
        args=("--budget", "4,0.5", "--out", "{tmp}/topk-out"),
        verbs=("topk",),
    ),
    "k flag not a number": Case(
        "--k", "expected positive integers", args=("--k", "four", "--out", "{tmp}/topk-out"), verbs=("topk",)
    ),
    "unknown attention mode": Case(
        "attention.mode",
        "'dense', 'gates', 'topk' or 'budget'",
        changes={"attention.mode": "sparse"},
        verbs=CONFIG_VERBS,
    ),
    "lr <= 0": Case("training.lr", "greater than 0", changes={"training.lr": 0.0}, verbs=CONFIG_VERBS),
    "negative max_steps": Case(
        "training.max_steps", "greater than or equal to 1", changes={"training.max_steps": -5}, verbs=CONFIG_VERBS
    ),
    "heldout fraction outside (0, 1)": Case(
        "data.heldout_fraction", "less than 1", changes={"data.heldout_fraction": 1.5}, verbs=CONFIG_VERBS
    ),
    "unknown sampler": Case(
        "search.sampler", "'tpe', 'nsga2', 'gp', 'random' or 'grid'", changes={"search.sampler": "bayes"}
    ),
    "zero trials": Case("search.trials", "greater than or equal to 1", changes={"search.trials": 0}),
    "negative trials (flag)": Case("search.trials", "greater than or equal to 1", args=("--trials", "-3")),
    "zero concurrency (flag)": Case("search.concurrency", "greater than or equal to 1", args=("--concurrency", "0")),
    "grid sampler without a lambda range": Case(
        "search.space",
        "grid sampler searches lam",
        changes={
            "search.sampler": "grid",
            "search.space.lam": _DELETE,
            "search.space.alpha": {"low": 0.0, "high": 1.0},
        },
    ),
    "constrained searched without gates": Case(
        "search.space.objective",
        "needs attention.mode 'gates'",
        changes={"attention.mode": "dense", "search.space.objective": ["penalised", "constrained"]},
    ),
    # --- data
    "missing data file": Case(
        "data.source", "file not found", changes={"data.source": "{tmp}/missing.csv"}, verbs=(*CONFIG_VERBS, "topk")
    ),
    "empty data file": Case(
        "data.source",
        "file is empty",
        changes={"data.source": "{tmp}/empty.csv"},
        setup=_write("empty.csv", ""),
        verbs=CONFIG_VERBS,
    ),
    "data file with a header only": Case(
        "data.source",
        "header only: text, label",
        changes={"data.source": "{tmp}/header.csv"},
        setup=_write("header.csv", "text,label\n"),
        verbs=CONFIG_VERBS,
    ),
    "missing label column": Case(
        "data.source",
        "column 'label' not found (columns: text, lab)",
        changes={"data.source": "{tmp}/nolabel.csv"},
        setup=_write("nolabel.csv", "text,lab\nhello there,1\nbye now,0\nok then,1\n"),
        verbs=(*CONFIG_VERBS, "topk"),
    ),
    "missing mapped text column": Case(
        "data.source",
        "column 'sentence' not found",
        changes={"data.source": "{tmp}/d.jsonl", "data.columns": {"text": "sentence"}},
        setup=_write("d.jsonl", '{"text": "a b", "label": 1}\n{"text": "c", "label": 0}\n'),
        verbs=CONFIG_VERBS,
    ),
    "unsupported data file type": Case(
        "data.source",
        "unsupported file type '.xlsx'",
        changes={"data.source": "{tmp}/d.xlsx"},
        setup=_write("d.xlsx", "x"),
        verbs=CONFIG_VERBS,
    ),
    "binary csv data file": Case(
        "data.source",
        "could not be read",
        changes={"data.source": "{tmp}/bin.csv"},
        setup=_write_bytes("bin.csv", BINARY),
        verbs=CONFIG_VERBS,
    ),
    "non-UTF-8 text corpus": Case(
        "data.source",
        "not a text file (not UTF-8",
        changes={"data.source": "{tmp}/corpus.txt", "model.name": "tiny-gpt2", "model.tiny": _DELETE},
        setup=_write_bytes("corpus.txt", "caf\u00e9 latin-1\n".encode("latin-1") * 5),
        verbs=CONFIG_VERBS,
    ),
    "validation file missing": Case(
        "data.validation",
        "file not found",
        changes={"data.source": "{tmp}/train.csv", "data.validation": "{tmp}/dev.csv"},
        setup=_write("train.csv", "text,label\na b,1\nc d,0\ne f,1\n"),
        verbs=CONFIG_VERBS,
    ),
    "validation file without the label column": Case(
        "data.validation",
        "column 'label' not found (columns: text, y)",
        changes={"data.source": "{tmp}/train.csv", "data.validation": "{tmp}/dev.csv"},
        setup=lambda tmp: (
            _write("train.csv", "text,label\na b,1\nc d,0\ne f,1\n")(tmp),
            _write("dev.csv", "text,y\na b,1\n")(tmp),
        ),
        verbs=CONFIG_VERBS,
    ),
    "validation file beside a builtin task": Case(
        "data.validation",
        "goes with a local data.source",
        changes={"data.validation": "{tmp}/dev.csv"},
        setup=_write("dev.csv", "text,label\na b,1\n"),
        verbs=CONFIG_VERBS,
    ),
    "fractional labels declared classification": Case(
        "data.source",
        "holds numbers like 0.5 but data.kind is classification",
        changes={"data.source": "{tmp}/f.csv", "data.kind": "classification"},
        setup=_write("f.csv", "text,label\na b,0.5\nc d,0.25\ne f,1\n"),
        verbs=CONFIG_VERBS,
    ),
    "class names declared regression": Case(
        "data.source",
        "holds class names like 'pos' but data.kind is regression",
        changes={"data.source": "{tmp}/n.csv", "data.kind": "regression"},
        setup=_write("n.csv", "text,label\na b,pos\nc d,neg\ne f,pos\n"),
        verbs=CONFIG_VERBS,
    ),
    "unknown builtin task": Case(
        "data.source", "did you mean 'builtin:majority'", changes={"data.source": "builtin:majorty"}, verbs=CONFIG_VERBS
    ),
    "bad builtin option": Case(
        "data.builtin", "'n_train' must be >= 1", changes={"data.builtin.n_train": 0}, verbs=CONFIG_VERBS
    ),
    # --- model
    "unknown model": Case(
        "model.name", "did you mean 'tiny-bert'", changes={"model.name": "tiny-brt"}, verbs=(*CONFIG_VERBS, "topk")
    ),
    "unknown architecture": Case(
        "model.name",
        "model type 't5' is not supported",
        changes={"model.name": "{tmp}/t5"},
        setup=_t5_folder,
        verbs=CONFIG_VERBS,
    ),
    "model does not fit the task": Case(
        "model.name", "causal LM", changes={"model.name": "tiny-gpt2"}, verbs=CONFIG_VERBS
    ),
    # --- cluster capacity (a new local cluster: checked against this machine before Ray starts)
    "concurrency larger than the local cluster": Case(
        "search.concurrency",
        f"local cluster has {N_CPU}",
        changes={"search.trials": N_CPU + 1, "search.concurrency": N_CPU + 1, "distributed.cpus_per_worker": 1.0},
    ),
    "one trial larger than the local cluster": Case(
        "distributed.workers",
        f"local cluster has {N_CPU}",
        changes={"distributed.workers": N_CPU + 1, "distributed.cpus_per_worker": 1.0},
    ),
    "more GPUs than the machine has": Case(
        "distributed.gpus_per_worker",
        "GPUs, but the local cluster has",
        changes={"distributed.gpus_per_worker": 1.0, "distributed.workers": "{ngpu+1}"},
    ),
    # --- output folders
    "run folder under a read-only folder": Case(
        "--run-dir", "not writable", args=("--run-dir", "{tmp}/ro/run"), setup=_readonly_dir, root_skip=True
    ),
    "run folder under a file": Case(
        "--run-dir", "is a file, not a folder", args=("--run-dir", "{tmp}/afile/run"), setup=_write("afile", "x")
    ),
    "Tune storage under a file": Case(
        "--storage-path",
        "is a file, not a folder",
        args=("--storage-path", "{tmp}/afile/tune"),
        setup=_write("afile", "x"),
    ),
    "topk output under a file": Case(
        "--out",
        "is a file, not a folder",
        args=("--out", "{tmp}/afile/topk"),
        setup=_write("afile", "x"),
        verbs=("topk",),
    ),
    # --- tracking store
    "unreachable tracking server": Case(
        "MLFLOW_TRACKING_URI", "did not answer", env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    ),
    "sqlite store in a missing folder": Case(
        "MLFLOW_TRACKING_URI", "does not exist", env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/no-such-dir/mlflow.db"}
    ),
}


def _fill(value: Any, tmp: Path) -> Any:
    if isinstance(value, str):
        if value == "{ngpu+1}":
            return _n_gpu() + 1
        return value.replace("{tmp}", str(tmp))
    if isinstance(value, dict):
        return {k: _fill(v, tmp) for k, v in value.items()}
    return value


def _prepare(
    case: Case, verb: str, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], Path, dict[str, str]]:
    """Write the malformed file; point Ray temp, MLflow and the run root into ``tmp``; the argv."""
    if case.root_skip and os.geteuid() == 0:
        pytest.skip("folder permissions do not bind root (the 'under a file' case covers an unwritable run folder)")
    (tmp / "store").mkdir()
    env = {
        "RAY_TMPDIR": str(tmp / "raytmp"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/store/mlflow.db",
        "ECON_RAY_RUN_ROOT": str(tmp / "runs"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **{k: _fill(v, tmp) for k, v in case.env.items()},
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("ECON_RAY_STORAGE_PATH", raising=False)
    monkeypatch.chdir(tmp)
    if case.setup:
        case.setup(tmp)
    path = tmp / "bad.yaml"
    if "--missing-file" in case.args:
        path = tmp / "no-such-config.yaml"
    elif isinstance(case.raw, bytes):
        path.write_bytes(case.raw)
    elif case.raw is not None:
        path.write_text(case.raw)
    else:
        data = copy.deepcopy(BASE)
        for key, value in case.changes.items():
            _set(data, key, _fill(value, tmp))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    extra = [_fill(a, tmp) for a in case.args if a != "--missing-file"]
    if verb == "topk":
        argv = ["topk", str(path), "--k", "4,1", *(extra or ["--out", str(tmp / "topk-out")])]
    elif verb == "search":
        argv = ["search", str(path), *extra]
    else:
        argv = [verb, str(path)]
    return argv, path, env


def _assert_nothing_started(tmp: Path, argv: list[str]) -> None:
    assert not (tmp / "raytmp").exists(), "a Ray session folder was created"
    assert not (tmp / "store" / "mlflow.db").exists(), "the MLflow store was created"
    assert not (tmp / "store" / "mlartifacts").exists()
    assert not (tmp / "runs").exists(), "a run folder was created"
    assert not (tmp / "topk-out").exists()
    for flag in ("--run-dir", "--storage-path", "--out"):
        if flag in argv:
            assert not Path(argv[argv.index(flag) + 1]).exists(), f"{flag} folder was created"
    if "ray" in sys.modules:
        import ray

        assert not ray.is_initialized()


def _assert_one_line(err: str, path: Path, case: Case) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("econ-ray: error: "), line
    assert str(path) in line, line
    assert case.field in line, line
    assert case.expected in line, line


PARAMS = [pytest.param(name, verb, id=f"{verb}:{name}") for name, case in CASES.items() for verb in case.verbs]


@pytest.mark.parametrize(("name", "verb"), PARAMS)
def test_malformed_input_exits_2_before_any_work(name, verb, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    argv, path, _ = _prepare(case, verb, tmp_path, monkeypatch)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    _assert_one_line(err, path, case)
    _assert_nothing_started(tmp_path, argv)


# The installed console script, as a user runs it (a few cases: each process imports the stack).
SUBPROCESS_CASES = ["missing label column", "concurrency larger than the local cluster"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_malformed_input_console_script(name, tmp_path, monkeypatch):
    case = CASES[name]
    argv, path, env = _prepare(case, "search", tmp_path, monkeypatch)
    exe = Path(sys.executable).with_name("econ-ray")
    proc = subprocess.run(
        [str(exe), *argv], capture_output=True, text=True, timeout=300, env={**os.environ, **env}, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    _assert_one_line(proc.stderr, path, case)
    _assert_nothing_started(tmp_path, argv)


def test_enough_distinct_cases():
    assert len(CASES) >= 20
    assert len(
        {
            (c.field, c.expected, json.dumps(c.changes, default=str), str(c.raw), c.args, json.dumps(c.env))
            for c in CASES.values()
        }
    ) == len(CASES)


def test_valid_base_passes_the_preflight(tmp_path, monkeypatch):
    """The checks can pass: BASE itself is accepted by the pre-flight (so each case fails for its change)."""
    from econ_ray.config import load_config
    from econ_ray.search.preflight import check_search

    argv, path, _ = _prepare(Case("", "", changes={}), "search", tmp_path, monkeypatch)
    check_search(load_config(path), path)
    assert main(["validate", str(path)]) == 0
    _assert_nothing_started(tmp_path, argv)
