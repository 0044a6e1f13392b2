"""``econ-ray ablation FILE --lam X``: attention-only / FFN-only / both / dense at one price (Table 4)."""

from __future__ import annotations

import argparse

from econ_ray.cli.common import dump, fail, print_rows


def cmd_ablation(args: argparse.Namespace) -> int:
    from econ_ray.config import ConfigError, load_config, parse_override
    from econ_ray.data import DataError
    from econ_ray.experiments.ablation import VARIANTS, run_ablation, variant_config, write_ablation
    from econ_ray.modeling import ModelError

    try:
        if args.lam <= 0:
            raise ValueError(f"--lam must be > 0 (the shared price of compute), got {args.lam}")
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = sorted(set(variants) - set(VARIANTS))
        if unknown or not variants:
            raise ValueError(f"--variants: unknown {unknown}; expected a comma list of {list(VARIANTS)}")
        cfg = load_config(args.file, dict(parse_override(s) for s in args.set or []))
        for v in variants:
            variant_config(cfg, v, args.lam)
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))
    try:
        rows = run_ablation(cfg, args.lam, variants)
    except (DataError, ModelError) as exc:
        return fail(f"{args.file}: {exc}")
    paths = write_ablation(args.out, rows)
    print_rows(
        f"ablation at lambda = {args.lam:g} ({cfg.name})",
        rows,
        [
            "variant",
            "alpha",
            "beta",
            "metric_name",
            "metric",
            "effective_gflops",
            "dense_total_gflops",
            "attention_density",
            "ffn_density",
            "dead_heads",
            "dead_neurons",
        ],
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if args.json:
        print(dump({"rows": rows, "lam": args.lam, "files": {k: str(v) for k, v in paths.items()}}))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablation",
        help="price attention only, FFN only, both (and none) at one lambda",
        description="Seed 000 Table 4, measured: train the file's model with the penalised "
        "objective at one lambda pricing attention only (beta = 0), FFN only (alpha = 0) or both, "
        "plus a dense run of the same steps; same initial weights and seed for every row. "
        "Writes ablation.json and ablation.png.",
    )
    p.add_argument("file", help="search-space YAML (its run config is the base of every variant)")
    p.add_argument("--lam", type=float, required=True, help="the price of compute shared by all variants")
    p.add_argument("--variants", default="dense,attention,ffn,both", help="comma list (default: all four)")
    p.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--json", action="store_true", help="print {rows: [...]} as one JSON object on the last line")
    p.set_defaults(func=cmd_ablation)
