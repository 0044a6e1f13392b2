"""The ``econ-ray`` command: parses arguments and calls library functions, nothing else.

Exit codes: 0 success, 1 a run that finished without the asked-for result, 2 bad input (config,
data, model) detected before any work starts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from econ_ray.config import ConfigError, load_config, parse_override

EXIT_BAD_INPUT = 2


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def _dump(obj: dict[str, Any]) -> str:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in obj.items()}
    return json.dumps(clean, default=_json_default, sort_keys=True)


def _fail(message: str) -> int:
    print(f"econ-ray: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


# ---- train ---------------------------------------------------------------------------------------

def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    ov: dict[str, Any] = {}
    for item in args.set or []:
        key, value = parse_override(item)
        ov[key] = value
    flags = {
        "lam": "objective.lam", "alpha": "objective.alpha", "beta": "objective.beta",
        "objective": "objective.kind", "attention": "attention.mode", "k": "attention.k",
        "budget": "attention.budget", "max_steps": "training.max_steps", "seed": "training.seed",
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


def _print_table(title: str, row: dict[str, Any], keys: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in keys:
        v = row.get(k)
        if v is None:
            continue
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console(file=sys.stdout, soft_wrap=True).print(table)


TRAIN_KEYS = [
    "task", "objective", "attention", "lam", "alpha", "beta", "tau", "multiplier", "feasible", "metric_name",
    "metric", "dense_metric", "ce", "ce_heldout", "ce_dense", "attention_density", "ffn_density", "gini",
    "entropy_bits", "empty_row_fraction", "dead_heads", "dead_neurons", "seq_len", "dense_gflops",
    "effective_gflops", "attention_gflops", "effective_attention_gflops", "dense_total_gflops",
    "effective_total_gflops", "steps", "stopped_early",
]


def cmd_train(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file, _train_overrides(args))
    except (ConfigError, ValueError) as exc:
        return _fail(str(exc))
    from econ_ray.data import DataError
    from econ_ray.modeling import ModelError
    from econ_ray.training import train_run

    try:
        result = train_run(cfg)
    except (DataError, ModelError) as exc:
        return _fail(f"{args.file}: {exc}")
    s = result.summary
    _print_table(f"econ-ray train: {cfg.name}", s, TRAIN_KEYS)
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
        "total_gflops": fc.total / 1e9,
        "dense_gmacs": fc.linear / 2e9,
    }
    _print_table(f"dense FLOPs of {args.arch} at L={args.seq_len} (FLOPs = 2 x multiply-adds)", out,
                 ["dense_gflops", "attention_gflops", "total_gflops", "dense_gmacs"])
    if args.json:
        print(_dump(out))
    return 0


# ---- validate ------------------------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        cfg = load_config(args.file)
        src = cfg.data.source
        known_prefix = ("builtin:", "glue/", "wikitext")
        if not src.startswith(known_prefix):
            path = Path(src)
            if not path.exists():
                raise ConfigError(args.file, "data.source", f"no such file {src!r} (and not a built-in or hub name)")
            if path.is_file() and path.stat().st_size == 0:
                raise ConfigError(args.file, "data.source", f"file {src!r} is empty")
    except ConfigError as exc:
        return _fail(str(exc))
    print(f"{args.file}: ok ({cfg.name}: model {cfg.model.name}, data {cfg.data.source}, "
          f"attention {cfg.attention.mode}, objective {cfg.objective.kind})")
    return 0


# ---- parser --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="econ-ray",
        description="Find the accuracy-vs-compute Pareto set of transformers: train with a price on compute "
        "or under a loss ceiling, count FLOPs honestly, search with Ray Tune + Optuna, track in MLflow.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one point of a search-space file and print its metrics",
                       description="Train one point of a search-space file (dense phase, then the configured "
                       "attention mode and objective) and print every metric.")
    p.add_argument("file", help="search-space YAML (e.g. search_spaces/quickstart.yaml)")
    p.add_argument("--lam", type=float, help="price of compute lambda (penalised objective)")
    p.add_argument("--alpha", type=float, help="weight of the attention cost")
    p.add_argument("--beta", type=float, help="weight of the FFN cost")
    p.add_argument("--objective", choices=["penalised", "constrained"], help="training objective")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tau", type=float, help="absolute loss ceiling CE <= tau (constrained)")
    g.add_argument("--tau-rel", type=float, help="relative ceiling eps: tau = (1+eps) * CE_dense (constrained)")
    p.add_argument("--attention", choices=["dense", "gates", "topk", "budget"], help="attention mode")
    p.add_argument("--k", type=int, help="edges kept per query in topk mode")
    p.add_argument("--budget", type=float, help="mean attended tokens per query in budget mode")
    p.add_argument("--max-steps", type=int, help="optimiser steps of the main phase")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field by dotted path, e.g. --set training.lr=1e-4 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on the last line")
    p.set_defaults(func=cmd_train)

    from econ_ray.compute import ARCHS

    p = sub.add_parser("flops", help="dense FLOPs of a built-in architecture shape (no download)",
                       description="Dense FLOPs at batch 1 of a built-in architecture shape. dense_gflops counts "
                       "the weight layers (what FlopCounterMode reads on the stock model), attention_gflops the "
                       "QK^T and AV products; FLOPs = 2 x multiply-adds.")
    p.add_argument("--arch", choices=sorted(ARCHS), required=True, help="architecture shape")
    p.add_argument("--seq-len", type=int, required=True, help="sequence length L in tokens")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("validate", help="check a search-space file without loading any model or data",
                       description="Validate a search-space file. Exit 0 if good; exit 2 with one line naming the "
                       "file, the field and what was expected otherwise.")
    p.add_argument("file", help="search-space YAML")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
