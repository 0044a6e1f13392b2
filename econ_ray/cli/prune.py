"""``econ-ray prune``: post-hoc pruning baselines (FFN magnitude / activation, Michel head importance,
top-k) on a trained dense model at several ratios, no retraining."""

from __future__ import annotations

import argparse

from econ_ray.cli.common import dump, fail, print_rows

COLUMNS = [
    "method",
    "ratio",
    "k",
    "metric",
    "effective_gflops",
    "dense_total_gflops",
    "attention_density",
    "ffn_density",
    "dead_heads",
    "dead_neurons",
]


def cmd_prune(args: argparse.Namespace) -> int:
    from econ_ray.config import ConfigError, parse_override
    from econ_ray.data import DataError
    from econ_ray.experiments.baselines import (
        parse_methods,
        parse_ratios,
        plot_pareto_with_baselines,
        run_baselines,
        write_baselines,
    )
    from econ_ray.modeling import ModelError

    try:
        methods = parse_methods(args.method)
        ratios = parse_ratios(args.ratios)
        if args.calib_batches < 1 or args.batch_size < 1:
            raise ValueError("--calib-batches and --batch-size must be >= 1")
        if args.overlay and not (__import__("pathlib").Path(args.overlay) / "trials.json").is_file():
            raise ValueError(f"--overlay {args.overlay}: not a search run folder (no trials.json)")
        overrides = dict(parse_override(item) for item in args.set or [])
        from econ_ray.experiments.targets import load_target

        t = load_target(args.target, args.model, overrides)
        rows = run_baselines(
            t.model,
            t.runtime,
            t.validation,
            t.calibration,
            t.task,
            seq_len=t.seq_len,
            methods=methods,
            ratios=ratios,
            batch_size=args.batch_size,
            calib_batches=args.calib_batches,
        )
    except (ConfigError, ValueError, DataError, ModelError, FileNotFoundError) as exc:
        return fail(str(exc))
    paths = write_baselines(args.out, rows)
    if args.overlay:
        paths["overlay"] = plot_pareto_with_baselines(args.overlay, rows, f"{args.out}/pareto_baselines.png")
    print_rows(
        f"post-hoc pruning, no retraining ({rows[0]['metric_name']}; GFLOPs at L = {t.seq_len}, batch 1)", rows, COLUMNS
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if args.json:
        print(dump({"rows": rows, "files": {k: str(v) for k, v in paths.items()}}))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="post-hoc pruning baselines at several ratios, no retraining",
        description="Prune a trained dense model without retraining: FFN neurons by weight magnitude "
        "(ffn-magnitude) or mean activation on calibration batches (ffn-activation), attention heads "
        "by the importance of Michel et al. 2019 (heads), or top-k attention (topk, k = (1 - ratio) L). "
        "Each row is evaluated like a search trial; writes baselines.json and baselines.png.",
    )
    p.add_argument("target", help="a search-space file (its dense model is trained first) or a saved model folder")
    p.add_argument(
        "--method",
        default="ffn-magnitude,ffn-activation,heads,topk",
        help="comma-separated methods: ffn-magnitude, ffn-activation, heads, topk (default all)",
    )
    p.add_argument("--ratios", default="0.1,0.3,0.5,0.7", help="comma-separated fractions of units removed, in [0, 1)")
    p.add_argument("--model", help="a saved econ-ray model folder to prune instead of training the file's dense model")
    p.add_argument("--out", default="runs/prune", help="output folder (default runs/prune)")
    p.add_argument(
        "--calib-batches",
        type=int,
        default=8,
        help="calibration batches (held-out training data) for the data-driven scores",
    )
    p.add_argument("--batch-size", type=int, default=64, help="evaluation and calibration batch size")
    p.add_argument(
        "--overlay",
        metavar="RUN_DIR",
        help="also draw the curves over this search run's Pareto plot (pareto_baselines.png)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--json", action="store_true", help="print {rows, files} as one JSON object on the last line")
    p.set_defaults(func=cmd_prune)
