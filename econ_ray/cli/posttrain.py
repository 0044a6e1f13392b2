"""``econ-ray posttrain``: sparse-attention post-training of a trained model (a causal LM, or an encoder
with a classification or regression head) over eps, against top-k."""

from __future__ import annotations

import argparse

from econ_ray.cli.common import dump, fail, fmt, print_table

COLUMNS = [
    "method",
    "eps",
    "k",
    "budget",
    "match",
    "ce",
    "metric",
    "tau",
    "feasible",
    "kept_fraction",
    "edges_per_query",
    "empty_row_fraction",
    "effective_gflops",
    "steps",
]


def parse_eps(text: str) -> list[float]:
    """'0.01,0.05' -> [0.01, 0.05]; ValueError on an empty list, a non-number or a negative value."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--eps needs comma-separated numbers >= 0 (e.g. 0.01,0.05,0.1), got {text!r}") from None
    if not values or any(v < 0 or v != v or v == float("inf") for v in values):
        raise ValueError(f"--eps needs comma-separated numbers >= 0 (e.g. 0.01,0.05,0.1), got {text!r}")
    return values


def cmd_posttrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from econ_ray.config import ConfigError, load_config, parse_override

    try:
        eps = parse_eps(args.eps)
        if args.model and not Path(args.model).is_dir():
            raise ValueError(f"--model {args.model}: no such model folder")
        overrides = dict(parse_override(item) for item in args.set or [])
        # the file may be a dense or constrained config: the eps sweep sets the objective per point
        overrides.setdefault("attention.mode", "gates")
        cfg = load_config(args.target, overrides)
    except (ConfigError, ValueError) as exc:
        return fail(str(exc))
    from econ_ray.data import DataError
    from econ_ray.experiments.posttrain import run_posttrain, write_posttrain
    from econ_ray.modeling import ModelError

    try:
        out_dir = args.out or "runs/posttrain"
        result = run_posttrain(
            cfg,
            eps,
            model_dir=args.model,
            freeze_weights=args.freeze_weights,
            continued=not args.no_continued,
            save_dir=Path(out_dir) / "models" if args.save_models else None,
        )
    except (DataError, ModelError, ValueError, FileNotFoundError) as exc:
        return fail(f"{args.target}: {exc}")
    paths = write_posttrain(out_dir, result)
    from rich.table import Table

    table = Table(
        title=f"sparse-attention post-training on {result['task']} (L = {result['seq_len']}, "
        f"CE_dense = {result['ce_dense']:.4g}, {result['mean_valid_keys_per_query']:.3g} valid keys/query)"
    )
    # a KL ceiling (objective.constrain kl): tau is in nats of KL, shown beside the measured KL
    columns = COLUMNS + (["kl_teacher"] if any(r.get("kl_teacher") is not None for r in result["rows"]) else [])
    for c in columns:
        table.add_column(c, justify="left" if c in ("method", "match") else "right")
    for r in result["rows"]:
        table.add_row(*[fmt(r.get(c)) for c in columns])
    print_table(table, "wrote " + ", ".join(str(p) for p in paths.values()))
    if args.json:
        print(dump({**result, "files": {k: str(v) for k, v in paths.items()}}))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "posttrain",
        help="post-train attention gates of a trained model under CE <= (1+eps) CE_dense (or KL <= eps CE_dense), "
        "vs top-k",
        description="Sparse-attention post-training (seed 003): train (or load) the dense model (a causal LM or an encoder), then for "
        "each eps close attention gates under CE <= (1+eps) * CE_dense (with objective.constrain kl: the KL to the "
        "dense teacher <= eps * CE_dense nats); compare with top-k and a threshold "
        "budget at the same mean kept edges per query, and with the dense model trained as many more steps. "
        "Writes posttrain.json and posttrain.png.",
    )
    p.add_argument(
        "target",
        help="search-space file (e.g. search_spaces/posttrain_gpt2.yaml, search_spaces/minilm_pydoc_pairs_posttrain.yaml)",
    )
    p.add_argument("--eps", required=True, help="comma-separated relative ceilings eps >= 0, e.g. 0.01,0.05,0.1")
    p.add_argument(
        "--model", help="a saved econ-ray model folder to post-train instead of training the file's dense model"
    )
    p.add_argument(
        "--freeze-weights",
        action="store_true",
        help="train only the per-head gate biases (ablation; seed 003 trains every weight)",
    )
    p.add_argument("--no-continued", action="store_true", help="skip the dense-continued reference run")
    p.add_argument("--out", help="output folder (default runs/posttrain)")
    p.add_argument(
        "--save-models",
        action="store_true",
        help="save the dense, each eps's post-trained and the continued model as folders under OUT/models/ "
        "(for econ-ray circuit, heatmap, export)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.set_defaults(func=cmd_posttrain)
