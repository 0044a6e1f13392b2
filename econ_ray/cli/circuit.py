"""``econ-ray circuit``: the task circuit of a saved causal LM by attribution patching, verified by patching."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from econ_ray.cli.common import dump, fail, out_file, print_rows


def cmd_circuit(args: argparse.Namespace) -> int:
    from econ_ray.experiments import circuit as cc

    try:
        if args.pairs < 2:
            raise ValueError(f"--pairs: expected at least 2 pairs, got {args.pairs}")
        if not 0 < args.target <= 1:
            raise ValueError(f"--target: expected a share in (0, 1], got {args.target}")
        if not Path(args.model_dir).is_dir():
            raise ValueError(f"{args.model_dir}: no such model folder")
        from econ_ray.modeling import load_model

        model, tok, meta = load_model(args.model_dir)
        if meta["task"]["kind"] != "lm":
            raise ValueError(
                f"{args.model_dir}: circuits need a causal LM; this model is a {meta['task']['kind']} model"
            )
        texts = cc.heldout_texts(meta) if args.task == "brackets" else None
        pairs = cc.pairs_for(args.task, tok, args.pairs, args.seed, texts=texts)
        found = cc.find_circuit(model, pairs, target=args.target)
    except (ValueError, FileNotFoundError) as exc:
        return fail(str(exc))
    s = found.summary()
    mode = meta["attention"]["mode"]
    n_pairs = int(pairs.clean.shape[0])
    print(
        f"{args.model_dir} ({mode} attention), task {args.task}, {n_pairs} clean/corrupted pairs of "
        f"{pairs.clean.shape[1]} tokens: metric (mean log-prob of the scored tokens) clean "
        f"{s['metric_clean']:.4f}, corrupted {s['metric_corrupt']:.4f}"
    )
    print(
        f"components: {s['components_90']} of {s['total_components']} (heads and MLPs) recover "
        f"{s['components_recovered']:.1%} by patching"
    )
    print(
        f"edges: {s['edges_90']} of {s['total_edges']} attention edges recover {s['metric_recovered']:.1%} by patching"
    )
    est = s["estimate_vs_patching"]
    print(
        f"linear estimate vs patching each component alone: Pearson {est['pearson_components']:.3f}, "
        f"largest error {est['max_abs_error']:.3g}"
    )
    print_rows("the component circuit, by |attribution|", found.components, ["unit", "attribution"])
    body = {**s, "model_dir": args.model_dir, "task": args.task, "pairs": n_pairs, "seed": args.seed}
    if args.out:
        out = out_file(args.out, "runs", f"circuit_{args.task}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**body, "components": found.components, "edges": found.edges}, indent=2))
        print(f"wrote {out}")
    if args.json:
        print(dump(body))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from econ_ray.experiments.circuit import TASKS

    p = sub.add_parser(
        "circuit",
        help="the task circuit of a saved causal LM: components and attention edges that recover 90 %%",
        description="Attribution patching (gradient x activation difference between clean and corrupted "
        "inputs) ranks the heads and MLPs, and separately every open attention edge; the smallest top-k of "
        "each that recovers --target of the task metric when everything else is patched to its corrupted value "
        "is found by real patching. Tasks: addition (the first operand swapped), induction (a repeated random "
        "sequence whose first half is swapped) and brackets (held-out pydoc-corpus text ending before a closing "
        "bracket, its opening bracket removed in the corrupted copy).",
    )
    p.add_argument("model_dir", help="a saved econ-ray model folder of a GPT-2-family causal LM")
    p.add_argument("--task", required=True, choices=TASKS, help="the clean/corrupted task")
    p.add_argument("--pairs", type=int, default=200, help="clean/corrupted pairs (default 200; brackets: at most)")
    p.add_argument("--target", type=float, default=0.9, help="share of the metric to recover (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated pairs")
    p.add_argument(
        "--out",
        help="folder for circuit_TASK.json (the summary, components, first 50 edges), or a .json file name",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print components_90, edges_90, total_edges, metric_recovered, ... as one JSON object on the last line",
    )
    p.set_defaults(func=cmd_circuit)
