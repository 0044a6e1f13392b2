"""Realised vs counted speedup of saved econ-ray models (issue 6 item 4).

For each model folder (or each Pareto model of a search run folder) this physically prunes the model
(``econ_ray.experiments.export.export``: dead heads and never-active FFN neurons removed), checks the
pruned model computes the same, and times the dense and the pruned model at batch 1 in this process.
It prints one row per model and writes them as JSON:

    counted (theoretical) speedup = dense_total_gflops / effective_gflops
    structural speedup            = dense_total_gflops / FLOPs of the pruned model
    realised speedup              = median latency dense / median latency pruned
    realised / counted            = how much of the counted saving a plain dense kernel delivers

Usage::

    python benchmarks/realised_speedup.py runs/quickstart-2025... [MODEL_DIR ...] --out realised_speedup.json
    python benchmarks/realised_speedup.py MODEL_DIR --threads 1 --repeats 200

Latency on a shared CPU is noisy: use ``--threads`` and many ``--repeats``, and read the p10/p90.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def model_folders(path: Path) -> list[tuple[str, Path]]:
    """(label, model folder) pairs: the folder itself, or the Pareto models of a search run folder."""
    if (path / "econ.json").is_file():
        return [(path.name, path)]
    if not (path / "pareto.json").is_file() or not (path / "trials.json").is_file():
        raise SystemExit(
            f"{path}: neither a model folder (econ.json) nor a search run folder (pareto.json, trials.json)"
        )
    trials = {t["trial_id"]: t for t in json.loads((path / "trials.json").read_text())}
    out = []
    for r in json.loads((path / "pareto.json").read_text())["pareto"]:
        ck = trials.get(r.get("trial_id"), {}).get("checkpoint")
        folder = _checkpoint_folder(ck) if ck else None
        if folder is None:
            print(f"skipping Pareto trial {r.get('trial_id')}: no model folder for checkpoint {ck!r}", file=sys.stderr)
            continue
        out.append((f"{path.name}/{r['trial_id']}", folder))
    return out


def _checkpoint_folder(checkpoint: str) -> Path | None:
    p = Path(checkpoint)
    if p.is_dir():
        hits = [p] if (p / "econ.json").is_file() else sorted(x.parent for x in p.rglob("econ.json"))
        return hits[0] if hits else None
    try:  # a remote (e.g. s3://) checkpoint: let Ray fetch it
        from econ_ray.search import model_dir

        return Path(model_dir(checkpoint))
    except Exception:  # noqa: BLE001 - reported by the caller as "no model folder"
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="saved econ-ray model folders and/or search run folders")
    ap.add_argument("--out", default="realised_speedup.json", help="JSON file for the rows")
    ap.add_argument("--export-dir", help="where the pruned models go (default: a temporary folder)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    args = ap.parse_args(argv)

    import torch

    from econ_ray.cli.common import print_rows
    from econ_ray.experiments.export import export
    from econ_ray.experiments.targets import load_target

    if args.threads:
        torch.set_num_threads(args.threads)
    folders = [pair for p in args.paths for pair in model_folders(Path(p))]
    export_root = Path(args.export_dir or tempfile.mkdtemp(prefix="econ-ray-export-"))
    rows = []
    for label, folder in folders:
        t = load_target(str(folder))
        rep = export(
            t.model,
            t.tokenizer,
            t.validation,
            t.task,
            seq_len=t.seq_len,
            out=export_root / label.replace("/", "_"),
            batch_size=args.batch_size,
            warmup=args.warmup,
            repeats=args.repeats,
        )
        rows.append(
            {
                "model": label,
                "source": str(folder),
                **rep,
                "realised_over_counted": rep["realised_speedup"] / rep["theoretical_speedup"],
            }
        )
    print_rows(
        f"realised vs counted speedup (batch 1, {torch.get_num_threads()} threads, median of {args.repeats})",
        rows,
        [
            "model",
            "metric_name",
            "masked_metric",
            "pruned_metric",
            "equal",
            "effective_gflops",
            "pruned_gflops",
            "dense_total_gflops",
            "latency_dense_ms",
            "latency_pruned_ms",
            "theoretical_speedup",
            "structural_speedup",
            "realised_speedup",
            "realised_over_counted",
        ],
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
