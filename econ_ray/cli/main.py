"""The ``econ-ray`` command: parses arguments and calls library functions, nothing else.

Exit codes: 0 success, 1 a run that finished without the asked-for result, 2 bad input (config,
data, model) detected before any work starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, get_args

from econ_ray.cli.common import (
    EXIT_BAD_INPUT,  # noqa: F401 (EXIT_BAD_INPUT re-exported)
    print_fields,
    print_table,
    wide_console,
)
from econ_ray.cli.common import dump as _dump
from econ_ray.cli.common import fail as _fail
from econ_ray.cli.common import print_rows as _print_rows
from econ_ray.config import ConfigError, load_config, parse_override
from econ_ray.config.schema import ObjectiveKind

T = TypeVar("T")

# ---- train ---------------------------------------------------------------------------------------


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    ov: dict[str, Any] = {}
    for item in args.set or []:
        key, value = parse_override(item)
        ov[key] = value
    flags = {
        "lam": "objective.lam",
        "alpha": "objective.alpha",
        "beta": "objective.beta",
        "objective": "objective.kind",
        "attention": "attention.mode",
        "k": "attention.k",
        "budget": "attention.budget",
        "max_steps": "training.max_steps",
        "seed": "training.seed",
    }
    for flag, key in flags.items():
        value = getattr(args, flag, None)
        if value is not None:
            ov[key] = value
    if args.tau is not None:
        ov["objective.tau"], ov["objective.tau_rel"] = args.tau, None
    if args.tau_rel is not None:
        ov["objective.tau_rel"], ov["objective.tau"] = args.tau_rel, None
    return ov


TRAIN_KEYS = [
    "task",
    "objective",
    "method",
    "attention",
    "lam",
    "alpha",
    "beta",
    "tau",
    "tau_aim",
    "multiplier",
    "feasible",
    "certified",
    "snapshot_step",
    "ce_certified",
    "infeasible_reason",
    "target_ratio",
    "target_gflops",
    "metric_name",
    "metric",
    "dense_metric",
    "ce",
    "ce_heldout",
    "ce_dense",
    "attention_density",
    "ffn_density",
    "gini",
    "entropy_bits",
    "empty_row_fraction",
    "dead_heads",
    "dead_neurons",
    "seq_len",
    "dense_gflops",
    "static_gflops",
    "effective_gflops",
    "attention_gflops",
    "effective_attention_gflops",
    "dense_total_gflops",
    "steps",
    "stopped_early",
]


def cmd_train(args: argparse.Namespace) -> int:
    from econ_ray.search.preflight import check_run

    try:
        cfg = load_config(args.file, _train_overrides(args))
        check_run(cfg, args.file)
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    from econ_ray.data import DataError
    from econ_ray.modeling import ModelError
    from econ_ray.training import DivergenceError, train_run

    try:
        result = train_run(cfg)
    except (DataError, ModelError) as exc:
        return _fail(f"{args.file}: {exc}")
    except DivergenceError as exc:
        print(f"econ-ray: {exc} (lower training.lr or objective.lam)", file=sys.stderr)
        return 1
    s = result.summary
    if args.save:
        from econ_ray.modeling import save_model

        pr = result.prepared
        s["saved_to"] = str(
            save_model(args.save, pr.model, pr.tokenizer, task=pr.task, config=cfg.model_dump(), summary=s)
        )
    print_fields(f"econ-ray train: {cfg.name}", s, TRAIN_KEYS + ["saved_to"])
    if args.json:
        print(_dump(s))
    return 0


# ---- flops ---------------------------------------------------------------------------------------


def cmd_flops(args: argparse.Namespace) -> int:
    from econ_ray.compute import ARCHS, dense_flops

    shape = ARCHS[args.arch]
    fc = dense_flops(shape, args.seq_len)
    out = {
        "arch": args.arch,
        "seq_len": args.seq_len,
        "batch": 1,
        "dense_gflops": fc.linear / 1e9,
        "attention_gflops": fc.attention / 1e9,
        "dense_total_gflops": fc.total / 1e9,  # the name every other verb and record uses
        "dense_gmacs": fc.linear / 2e9,
    }
    print_fields(
        f"dense FLOPs of {args.arch} at L={args.seq_len} (FLOPs = 2 x multiply-adds)",
        out,
        ["dense_gflops", "attention_gflops", "dense_total_gflops", "dense_gmacs"],
    )
    if args.json:
        print(_dump(out))
    return 0


# ---- validate ------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from econ_ray.search.preflight import check_run

    if Path(args.file).is_dir():
        return _fail(
            f"{args.file}: is a folder; expected a search-space YAML file (e.g. search_spaces/quickstart.yaml)"
        )
    try:
        cfg = load_config(args.file)
        check_run(cfg, args.file, loads_here=False)  # data source, columns and model, without loading them
    except ConfigError as exc:
        return _fail(str(exc))
    print(
        f"{args.file}: ok ({cfg.name}: model {cfg.model.name}, data {cfg.data.source}, "
        f"attention {cfg.attention.mode}, objective {cfg.objective.kind})"
    )
    return 0


# ---- search --------------------------------------------------------------------------------------

PARETO_COLUMNS = [
    "rank",
    "trial_id",
    "method",
    "metric",
    "static_gflops",
    "effective_gflops",
    "lam",
    "alpha",
    "beta",
    "tau",
    "target_ratio",
    "objective",
    "attention_density",
    "ffn_density",
    "version",
]
# the knobs of each objective: a column shows only when a row's objective uses it
KNOB_COLUMNS = {
    "lam": {"penalised"},
    "alpha": {"penalised"},
    "beta": {"penalised"},
    "tau": {"constrained"},
    "target_ratio": {"targeted", "prune"},
}


def pareto_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The Pareto table's columns for ``rows``: the knobs of the objectives they used (a targeted search shows
    its target, not lambda), the method and objective columns once when they say the same."""
    kinds = {str(r.get("objective")) for r in rows}
    cols = [c for c in PARETO_COLUMNS if c not in KNOB_COLUMNS or KNOB_COLUMNS[c] & kinds or not rows]
    if rows and all(r.get("method") == r.get("objective") for r in rows):
        cols.remove("objective")
    return cols


def _resume_config(args: argparse.Namespace, overrides: dict[str, Any]):
    """The config of a resumed search: the run's config.yaml, or FILE if it trains the same thing."""
    from pathlib import Path

    from econ_ray.search.resume import ResumeError, check_same_config, read_state

    run_dir = Path(args.resume)
    read_state(run_dir)  # a search run folder?
    stored = load_config(run_dir / "config.yaml", {k: v for k, v in overrides.items() if k.startswith("search.")})
    if args.file:
        given = load_config(args.file, overrides)
        check_same_config(stored.model_dump(mode="json"), given.model_dump(mode="json"))
        return given
    if any(not k.startswith("search.") for k in overrides):
        raise ResumeError("--set cannot change what a resumed search trains (only search.* keys)")
    return stored


def cmd_search(args: argparse.Namespace) -> int:
    from econ_ray.search.resume import ResumeError

    try:
        overrides = dict(parse_override(item) for item in args.set or [])
        for flag, key in (
            ("trials", "search.trials"),
            ("concurrency", "search.concurrency"),
            ("sampler", "search.sampler"),
        ):
            if getattr(args, flag) is not None:
                overrides[key] = getattr(args, flag)
        if args.dashboard_host is not None:
            overrides["distributed.dashboard"], overrides["distributed.dashboard_host"] = True, args.dashboard_host
        if args.resume:
            if args.run_dir or args.sampler:
                raise ResumeError("--resume goes on in its own folder with its own sampler: drop --run-dir/--sampler")
            cfg = _resume_config(args, overrides)
        elif not args.file:
            raise ValueError("search needs FILE (or --resume RUN_DIR)")
        else:
            cfg = load_config(args.file, overrides)
    except (ConfigError, ValueError, ResumeError) as exc:
        return _fail(str(exc))
    from econ_ray.search.driver import run_search
    from econ_ray.search.interrupt import SearchInterrupted
    from econ_ray.search.records import cost_key
    from econ_ray.search.results import SearchError
    from econ_ray.tracking import TrackingError

    try:
        out = run_search(
            cfg,
            config_path=args.file or f"{args.resume}/config.yaml",
            trials=args.trials,
            concurrency=args.concurrency,
            sampler=args.sampler,
            seed=args.seed,
            address=args.address,
            run_dir=args.run_dir,
            storage_path=args.storage_path,
            resume=args.resume,
            show="verbose" if args.verbose else "auto",
        )
    except ConfigError as exc:
        return _fail(str(exc))
    except (SearchError, TrackingError, ResumeError) as exc:
        return _fail(f"{args.file or args.resume}: {exc}")
    except SearchInterrupted as exc:
        print(
            f"econ-ray: search stopped by {exc.signal_name}; its finished trials are kept and its MLflow runs "
            f"ended KILLED. Go on with:\n  econ-ray search --resume {exc.run_dir}",
            file=sys.stderr,
        )
        return exc.exit_code
    from rich.table import Table

    metric_name = out.pareto[0]["metric_name"] if out.pareto else (out.dense or {}).get("metric_name", "metric")
    cost = str(out.pareto[0].get("cost_key") or cost_key(cfg.search.cost)) if out.pareto else cost_key(cfg.search.cost)
    table = Table(
        title=f"Pareto set: {metric_name} vs {cost.replace('_gflops', ' GFLOPs')} ({out.n_trials} trials, "
        f"{out.n_failed} failed, {out.n_infeasible} infeasible, hypervolume {out.hypervolume:.4g})"
    )
    columns = pareto_columns(out.pareto)
    for col in columns:
        table.add_column(col, justify="right" if col not in ("trial_id", "method", "objective") else "left")
    for row in out.pareto:
        table.add_row(*[f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c)) for c in columns])
    console = wide_console(table)
    console.print(table)
    if out.dense:
        from econ_ray.search.driver import dense_line

        console.print(f"dense model (every trial's start): {dense_line(out.dense)}")
    if out.failures:
        causes: dict[str, int] = {}
        for f in out.failures:
            cause = "diverged" if "diverged" in str(f.get("reason") or "") else f["status"]
            causes[cause] = causes.get(cause, 0) + 1
        console.print(
            f"{len(out.failures)} of {out.n_trials} trials did not complete ("
            + ", ".join(f"{n} {c}" for c, n in sorted(causes.items()))
            + "); they are not in the Pareto set:"
        )
    for f in out.failures:
        console.print(f"[yellow]trial {f['trial_id']} {f['status']}[/yellow]: {f['reason']}")
    if out.rerun:
        console.print(f"resumed: {len(out.rerun)} trial(s) cut off by the interruption were re-run with the same knobs")
    if out.pending_tracking_ops:
        console.print(
            f"[yellow]tracking store unavailable[/yellow] ({out.tracking_error}): {out.pending_tracking_ops} "
            f"MLflow operation(s) kept in {out.tracking_outbox}\n"
            f"upload them when the store is back: econ-ray sync {out.run_dir}"
        )
    console.print(f"run folder: {out.run_dir}\nplot: {out.plot}")
    if out.registered_model:
        console.print(
            f"registered model: {out.registered_model} (aliases rank-1 ... rank-{len(out.pareto)})\n"
            f"MLflow UI: mlflow ui --host 127.0.0.1 --backend-store-uri {_uri_hint()}\n"
            f"best under a budget: econ-ray registry best {out.registered_model} --max-gflops X"
        )
    if args.json:
        print(_dump(out.to_json()))
    return 0


def _uri_hint() -> str:
    from econ_ray.tracking import tracking_uri

    return tracking_uri()


# ---- registry ------------------------------------------------------------------------------------


def cmd_registry(args: argparse.Namespace) -> int:
    from econ_ray.tracking import TrackingError, find_best, list_versions

    uri = args.tracking_uri
    try:
        if args.registry_command == "list":
            rows = [_flat(r) for r in list_versions(args.name, uri=uri)]
            _print_rows(
                f"registered model {args.name}",
                rows,
                [
                    "version",
                    "aliases",
                    "method",
                    "metric_name",
                    "metric",
                    "static_gflops",
                    "effective_gflops",
                    "lam",
                    "alpha",
                    "beta",
                    "tau",
                    "objective",
                ],
            )
            if args.json:
                print(json.dumps(rows, default=str))
            return 0
        if args.registry_command == "best":
            answer = find_best(args.name, max_gflops=args.max_gflops, min_metric=args.min_metric, uri=uri)
            row = _flat(answer.row) if answer.row is not None else None
            if answer.skipped_at_chance:
                print(
                    f"econ-ray: passed over {answer.skipped_at_chance} version(s) of {args.name} within the budget "
                    f"whose metric is at or below chance level ({answer.chance:g}); --min-metric sets the floor "
                    "yourself",
                    file=sys.stderr,
                )
            if row is None:
                extra = f" and metric >= {args.min_metric}" if args.min_metric is not None else ""
                print(
                    f"econ-ray: no version of {args.name} within {args.max_gflops} (GFLOPs, or ms for a search "
                    f"on latency){extra}",
                    file=sys.stderr,
                )
                return 1
            _print_rows(
                f"best {args.name} within {args.max_gflops} GFLOPs",
                [row],
                [
                    "version",
                    "aliases",
                    "method",
                    "metric_name",
                    "metric",
                    "cost_key",
                    "static_gflops",
                    "effective_gflops",
                ],
            )
            if args.json:
                print(json.dumps({"name": args.name, **row}, default=str))
            return 0
        if args.registry_command == "load":
            from econ_ray.tracking import download_registered

            dst = download_registered(args.ref, args.out, uri=uri)
            print(f"{args.ref} -> {dst} (load with econ_ray.load_model({str(dst)!r}))")
            return 0
    except TrackingError as exc:
        return _fail(str(exc))
    return _fail("unknown registry command")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A registry row with its version tags (metric, effective_gflops, lam, ...) at the top level."""
    return {**row.get("tags", {}), **{k: v for k, v in row.items() if k != "tags"}}


# ---- topk ----------------------------------------------------------------------------------------


def _model_and_data(target: str, model_dir: str | None, overrides: dict[str, Any]):
    """(model, runtime, validation split, task, seq_len) for a search-space file or a saved model folder."""
    from econ_ray.experiments.targets import load_target

    t = load_target(target, model_dir, overrides)
    return t.model, t.runtime, t.validation, t.task, t.seq_len


def _number_list(text: str, cast: Callable[[str], T]) -> list[T] | None:
    """``"8,2,1"`` -> ``[8, 2, 1]`` (empty items skipped); None when an item is not a number."""
    try:
        return [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return None


def cmd_topk(args: argparse.Namespace) -> int:
    from econ_ray.data import DataError
    from econ_ray.experiments.topk import sweep, write_sweep
    from econ_ray.modeling import ModelError

    try:
        ks = _number_list(args.k, int)
        if not ks or min(ks) < 1:
            raise ValueError(f"{args.target}: --k: expected positive integers (e.g. 64,16,4,1), got {args.k!r}")
        budgets = _number_list(args.budget, float) if args.budget else []
        if budgets is None or any(not b >= 1.0 for b in budgets):  # NaN too
            raise ValueError(
                f"{args.target}: --budget: expected numbers >= 1 (e.g. 8,2,1): every query keeps at least its "
                f"strongest edge, so a mean below 1 edge per query cannot be reached, got {args.budget!r}"
            )
        overrides = dict(parse_override(item) for item in args.set or [])
        from pathlib import Path

        from econ_ray.search.preflight import check_run, check_writable_folder

        check_writable_folder(args.out or "runs/topk", args.target, "--out")
        if not Path(args.model or args.target).is_dir():  # a search-space file: check it before training
            check_run(load_config(args.target, overrides), args.target)
        model, rt, split, task, seq_len = _model_and_data(args.target, args.model, overrides)
    except (ConfigError, ValueError, DataError, ModelError, FileNotFoundError) as exc:
        return _fail(str(exc))
    rows = sweep(model, rt, split, task, seq_len=seq_len, ks=ks, budgets=budgets)
    out_dir = args.out or "runs/topk"
    paths = write_sweep(out_dir, rows)
    from rich.table import Table

    table = Table(title=f"top-k / budget sweep (L = {seq_len}, no retraining)")
    cols = ["mode", "k", "budget", "metric", "effective_gflops", "attention_density", "gini", "entropy_bits"]
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*[f"{r.get(c):.4g}" if isinstance(r.get(c), float) else str(r.get(c)) for c in cols])
    print_table(table, "wrote " + ", ".join(str(p) for p in paths.values()))
    if args.json:
        print(
            json.dumps(
                {
                    "rows": [r for r in rows if r["mode"] != "dense"],
                    "dense": rows[0],
                    "files": {k: str(v) for k, v in paths.items()},
                },
                default=str,
            )
        )
    return 0


# ---- parser --------------------------------------------------------------------------------------

# Verbs that live in their own modules: each module has ``add_parser(subparsers)`` that adds its
# sub-command and sets ``func``. Keeps this file to the core verbs.
COMMAND_MODULES: tuple[str, ...] = (
    "econ_ray.cli.ablation",
    "econ_ray.cli.prune",
    "econ_ray.cli.export",
    "econ_ray.cli.posttrain",
    "econ_ray.cli.heatmap",
    "econ_ray.cli.circuit",
    "econ_ray.cli.report",
    "econ_ray.cli.sync",
)


class Parser(argparse.ArgumentParser):
    """argparse with errors in two lines (what is wrong, where the usage is) and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n(usage: {self.prog} --help)\n")


def positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type: ``kind(text)`` that must be > 0."""

    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    from econ_ray._version import __version__

    parser = Parser(
        prog="econ-ray",
        description="Find the accuracy-vs-compute Pareto set of transformers: train with a price on compute "
        "or under a loss ceiling, count FLOPs honestly, search with Ray Tune + Optuna, track in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"econ-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train one point of a search-space file and print its metrics",
        description="Train one point of a search-space file (dense phase, then the configured "
        "attention mode and objective) and print every metric.",
    )
    p.add_argument("file", help="search-space YAML (e.g. search_spaces/quickstart.yaml)")
    p.add_argument("--lam", type=float, help="price of compute lambda (penalised objective)")
    p.add_argument("--alpha", type=float, help="weight of the attention cost")
    p.add_argument("--beta", type=float, help="weight of the FFN cost")
    p.add_argument("--objective", choices=list(get_args(ObjectiveKind)), help="training objective")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tau", type=float, help="absolute loss ceiling CE <= tau (constrained)")
    g.add_argument("--tau-rel", type=float, help="relative ceiling eps: tau = (1+eps) * CE_dense (constrained)")
    p.add_argument("--attention", choices=["dense", "gates", "topk", "budget"], help="attention mode")
    p.add_argument("--k", type=int, help="edges kept per query in topk mode")
    p.add_argument("--budget", type=float, help="mean attended tokens per query in budget mode")
    p.add_argument("--max-steps", type=int, help="optimiser steps of the main phase")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config field by dotted path, e.g. --set training.lr=1e-4 (repeatable)",
    )
    p.add_argument(
        "--save", metavar="DIR", help="save the trained model folder (for topk, prune, export, heatmap --model)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    p.set_defaults(func=cmd_train)

    from econ_ray.compute import ARCHS

    p = sub.add_parser(
        "flops",
        help="dense FLOPs of a built-in architecture shape (no download)",
        description="Dense FLOPs at batch 1 of a built-in architecture shape. dense_gflops counts "
        "the weight layers (what FlopCounterMode reads on the stock model), attention_gflops the "
        "QK^T and AV products; FLOPs = 2 x multiply-adds.",
    )
    p.add_argument("--arch", choices=sorted(ARCHS), required=True, help="architecture shape")
    p.add_argument("--seq-len", type=positive(int), required=True, help="sequence length L in tokens")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser(
        "validate",
        help="check a search-space file without loading any model or data",
        description="Validate a search-space file. Exit 0 if good; exit 2 with one line naming the "
        "file, the field and what was expected otherwise.",
    )
    p.add_argument("file", help="search-space YAML")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "search",
        help="multi-objective search (Ray Tune + Optuna) for the accuracy-vs-FLOPs Pareto set",
        description="Search the knobs whose ranges the file gives, training each trial on Ray Train "
        "workers with DeepSpeed; print the Pareto set, write the run folder, track in MLflow and "
        "register the Pareto models.",
    )
    p.add_argument("file", nargs="?", help="search-space YAML (optional with --resume: the run's config.yaml)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="go on with the interrupted search of RUN_DIR: finished trials are "
        "kept, the Optuna study and the MLflow parent run reused, the remaining trials run",
    )
    p.add_argument("--trials", type=int, help="number of trials (default: search.trials)")
    p.add_argument("--concurrency", type=int, help="trials at a time (default: search.concurrency)")
    p.add_argument(
        "--sampler", choices=["tpe", "nsga2", "gp", "random", "grid"], help="Optuna sampler (default: search.sampler)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local cluster)")
    p.add_argument("--run-dir", help="run folder (default: runs/NAME-TIMESTAMP)")
    p.add_argument("--storage-path", help="Tune storage, e.g. s3://bucket/econ-ray/tune (default: RUN_DIR/tune)")
    p.add_argument(
        "--dashboard-host",
        metavar="HOST",
        help="start the Ray dashboard and job server of the local cluster, listening on HOST "
        "(default: no dashboard; 127.0.0.1 keeps it on this machine, 0.0.0.0 exposes it to the network)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config field by dotted path, e.g. --set training.max_steps=100 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object on the last line")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's and Tune's own output (start-up, worker warnings) where Ray prints it; by default it "
        "goes to RUN_DIR/ray_output.log and the terminal shows the search's progress",
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "topk",
        help="sweep top-k (and budget) attention on a trained model, no retraining",
        description="Evaluate one trained model with top-k attention for each k (and threshold "
        "attention for each budget): metric, GFLOPs, density, Gini, entropy; writes topk.json, "
        "accuracy_vs_k.png and allocation_vs_k.png.",
    )
    p.add_argument("target", help="a search-space file (its dense model is trained first) or a saved model folder")
    p.add_argument("--k", required=True, help="comma-separated k values, e.g. 64,16,4,1")
    p.add_argument("--budget", help="comma-separated budgets B (mean attended tokens per query)")
    p.add_argument("--model", help="a saved econ-ray model folder to sweep instead of training the file's dense model")
    p.add_argument("--out", help="output folder (default runs/topk)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--json", action="store_true", help="print {rows: [...]} as one JSON object on the last line")
    p.set_defaults(func=cmd_topk)

    p = sub.add_parser(
        "registry",
        help="look up the registered Pareto models in the MLflow Model Registry",
        description="List, pick by budget, or download registered Pareto models "
        "(tracking store: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db).",
    )
    rsub = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    r = rsub.add_parser("list", help="list the versions of a registered model", description="List versions.")
    r.add_argument("name", help="registered model name")
    r.add_argument("--json", action="store_true", help="print the versions as JSON on the last line")
    r = rsub.add_parser(
        "best",
        help="best version within a FLOPs budget",
        description="The best version whose GFLOPs fit the budget (the search's cost: static_gflops unless the "
        "search set search.cost: effective); exit 1 if none fits.",
    )
    r.add_argument("name", help="registered model name")
    r.add_argument(
        "--max-gflops",
        type=positive(float),
        required=True,
        help="budget in the search's cost: GFLOPs per sequence (static or effective), or ms at batch 1 (latency)",
    )
    r.add_argument("--min-metric", type=float, help="also require metric >= this (<= for perplexity)")
    r.add_argument("--json", action="store_true", help="print the version as one JSON object on the last line")
    r = rsub.add_parser(
        "load",
        help="download a version (NAME@ALIAS or NAME/VERSION) as a model folder",
        description="Download a registered version; load it with econ_ray.modeling.load_model.",
    )
    r.add_argument("ref", help="NAME@ALIAS or NAME/VERSION")
    r.add_argument("--out", default="registered-model", help="destination folder (new or empty): the model folder")
    r.add_argument("--output", dest="out", help=argparse.SUPPRESS)  # the earlier name
    for r in rsub.choices.values():
        r.add_argument(
            "--tracking-uri",
            metavar="URI",
            help="tracking store to read (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db); never created",
        )
    p.set_defaults(func=cmd_registry)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def _quiet_weight_bars() -> None:
    """transformers' own bars (loading and writing the weight shards of a local folder, done in well under
    a second) would sit between our tables: off; the hub's download bars stay as the user has them."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_bars = not are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # also turns the hub's off
    if hub_bars:
        enable_progress_bars()


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep CLI output readable
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_weight_bars()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
