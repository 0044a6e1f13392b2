"""``econ-ray heatmap``: dense vs sparse attention probabilities of a saved model on one input (PNG)."""

from __future__ import annotations

import argparse

from econ_ray.cli.common import dump, fail, out_file


def parse_indices(text: str, flag: str) -> list[int]:
    """'0,1' -> [0, 1]; ValueError naming ``flag`` on anything else."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} needs comma-separated integers (e.g. 0,1), got {text!r}") from None
    if not values:
        raise ValueError(f"{flag} needs at least one index")
    return values


def _load(folder: str):
    from pathlib import Path

    from econ_ray.modeling import load_model

    if not Path(folder).is_dir():
        raise ValueError(f"{folder}: no such model folder")
    return load_model(folder)


def cmd_heatmap(args: argparse.Namespace) -> int:
    from econ_ray.attention.runtime import runtime_of
    from econ_ray.compute.shape import model_dims
    from econ_ray.data import DataError
    from econ_ray.experiments import heatmap as hm

    try:
        layers = parse_indices(args.layers, "--layers")
        heads = parse_indices(args.heads, "--heads")
        model, tok, meta = _load(args.model_dir)
        dims = model_dims(model.config)
        hm.check_selection(dims.n_layers, dims.n_heads, layers, heads)
        dense_model = model
        if args.dense_model:
            dense_model, dense_tok, _ = _load(args.dense_model)
            if dense_tok.get_vocab() != tok.get_vocab():
                raise ValueError(f"{args.dense_model}: its tokenizer differs from {args.model_dir}'s")
            dense_dims = model_dims(dense_model.config)
            hm.check_selection(dense_dims.n_layers, dense_dims.n_heads, layers, heads)
        inp = _input(args, tok, meta)
    except (ValueError, FileNotFoundError, DataError) as exc:
        return fail(str(exc))
    a = meta["attention"]
    sparse_mode = a["mode"] if a["mode"] != "dense" else "gates"
    dense = hm.attention_maps(dense_model, runtime_of(dense_model), inp, mode="dense")
    sparse = hm.attention_maps(model, runtime_of(model), inp, mode=sparse_mode, k=a.get("k"), budget=a.get("budget"))
    label = {"gates": "gated", "topk": f"top-{a.get('k')}", "budget": f"budget {a.get('budget')}"}[sparse_mode]
    out = hm.render(
        dense,
        sparse,
        layers=layers,
        heads=heads,
        tokens=inp.tokens,
        causal=hm.is_causal(model),
        out=str(out_file(args.out, "runs", "heatmap.png")),
        sparse_label=label,
    )
    print(
        f"wrote {out['file']} ({len(out['panels'])} panels: {len(layers) * len(heads)} heads x dense / {label}, "
        f"{len(inp.tokens)} tokens)"
    )
    for pnl in out["panels"]:
        if pnl["column"] != "dense":
            print(f"  layer {pnl['layer']} head {pnl['head']}: {pnl['kept_fraction']:.1%} of edges kept")
    if args.json:
        print(dump({**out, "layers": layers, "heads": heads, "sparse_mode": sparse_mode}))
    return 0


def _input(args: argparse.Namespace, tok, meta):
    """The input to draw: ``--text`` encoded like the task, else validation row ``--index`` (default 0)."""
    from econ_ray.config import RunConfig
    from econ_ray.data import TaskSpec, encode_split, load_task_for
    from econ_ray.experiments import heatmap as hm

    t = meta["task"]
    task = TaskSpec(t["name"], t["kind"], t["num_labels"], t["metric_name"])
    cfg = RunConfig.model_validate({k: v for k, v in meta["config"].items() if k in RunConfig.model_fields})
    d = cfg.data
    if args.text is not None:
        return hm.input_from_text(args.text, tok, task, d.max_length)
    splits = load_task_for(d, seed=cfg.training.seed)
    index = args.index or 0
    if not 0 <= index < len(splits.validation):
        raise ValueError(f"--index {index} is outside 0..{len(splits.validation) - 1}")
    return hm.input_from_split(
        encode_split(splits.validation[index : index + 1], splits.task, tok, d.max_length), 0, tok
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heatmap",
        help="dense vs sparse attention heatmaps of a saved model on one input (PNG)",
        description="Draw the attention probabilities of chosen layers and heads on one input: one row per "
        "(layer, head), columns dense / sparse (the model's gates, or its top-k / budget mode). Dense is the "
        "same model in dense mode unless --dense-model gives another folder (seed 000 Figure 6).",
    )
    p.add_argument("model_dir", help="a saved econ-ray model folder (the sparse model)")
    p.add_argument("--dense-model", help="a saved folder whose dense attention fills the dense column")
    p.add_argument("--layers", required=True, help="comma-separated layer indices, e.g. 0,1")
    p.add_argument("--heads", required=True, help="comma-separated head indices, e.g. 0,1")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--text", help="the input text (encoded like the task's examples)")
    g.add_argument("--index", type=int, help="row of the validation split to draw (default 0)")
    p.add_argument("--out", help="folder for heatmap.png, or a .png file name (default runs/heatmap.png)")
    p.add_argument(
        "--json", action="store_true", help="print {file, panels, tokens} as one JSON object on the last line"
    )
    p.set_defaults(func=cmd_heatmap)
