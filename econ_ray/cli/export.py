"""``econ-ray export``: physically prune a saved model (dead heads, never-active FFN neurons), save it as a
smaller Hugging Face model, check it computes the same, and compare theoretical with realised speedup."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from econ_ray.cli.common import dump, fail, print_fields

if TYPE_CHECKING:
    from transformers import PreTrainedModel

KEYS = [
    "metric_name",
    "masked_metric",
    "pruned_metric",
    "output_abs_diff",
    "tolerance",
    "equal",
    "plain_transformers_equal",
    "exported_attention",
    "heads_kept",
    "heads_total",
    "neurons_kept",
    "neurons_total",
    "params_dense",
    "params_pruned",
    "seq_len",
    "dense_total_gflops",
    "effective_gflops",
    "pruned_gflops",
    "counted_pruned_gflops",
    "latency_dense_ms",
    "latency_pruned_ms",
    "theoretical_speedup",
    "structural_speedup",
    "realised_speedup",
    "threads",
]


def cmd_export(args: argparse.Namespace) -> int:
    from econ_ray.data import DataError
    from econ_ray.modeling import ModelError
    from econ_ray.modeling.io import META_FILE

    if not (Path(args.model_dir) / META_FILE).is_file():
        return fail(f"{args.model_dir}: not an econ-ray model folder (no {META_FILE})")
    if args.repeats < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        return fail("--repeats must be >= 1, --warmup >= 0, --threads >= 1")
    import torch

    from econ_ray.experiments.export import export
    from econ_ray.experiments.targets import load_target

    threads = torch.get_num_threads()  # restored below: main() also runs in-process (tests, notebooks)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        t = load_target(args.model_dir)
        report = export(
            cast("PreTrainedModel", t.model),  # load_target builds Hugging Face models only
            t.tokenizer,
            t.validation,
            t.task,
            seq_len=t.seq_len,
            out=args.out,
            batch_size=args.batch_size,
            warmup=args.warmup,
            repeats=args.repeats,
        )
    except (ValueError, DataError, ModelError, FileNotFoundError) as exc:
        return fail(f"{args.model_dir}: {exc}")
    finally:
        torch.set_num_threads(threads)
    print_fields(f"physical pruning of {args.model_dir} -> {report['folder']}", report, KEYS[:12])
    print_fields("FLOPs (batch 1) and latency (median, batch 1)", report, KEYS[12:])
    print(f"load: AutoModel...from_pretrained({report['folder']!r}, trust_remote_code=True); report in export.json")
    if not report["plain_transformers_equal"]:
        why = report.get("plain_transformers_error") or (
            f"max difference {report.get('plain_transformers_abs_diff'):.3g} (task class), "
            f"{report.get('plain_transformers_hidden_abs_diff'):.3g} (AutoModel)"
        )
        print(
            f"econ-ray: the exported model as from_pretrained loads it is not the evaluated model: {why}",
            file=sys.stderr,
        )
    if args.json:
        print(dump(report))
    return 0 if report["equal"] and report["plain_transformers_equal"] else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="physically prune a saved model and compare theoretical with realised speedup",
        description="Remove heads with no open edge and FFN neurons never active on the evaluation "
        "set, save a smaller Hugging Face model (loadable with trust_remote_code=True; gated or top-k "
        "attention is exported with it), check its outputs equal the source's within 1e-4 in this "
        "process and, loaded by plain transformers in a fresh process (task class and AutoModel), "
        "plain_transformers_equal; time both at batch 1. Exit 1 if they differ; threshold-budget "
        "attention is refused (exit 2).",
    )
    p.add_argument("model_dir", help="a saved econ-ray model folder")
    p.add_argument("--out", required=True, help="folder for the pruned model")
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls before timing")
    p.add_argument("--repeats", type=int, default=50, help="timed calls (median reported)")
    p.add_argument("--threads", type=int, help="torch CPU threads for the timing (default: torch's)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    p.set_defaults(func=cmd_export)
