"""``report.md`` from a finished run folder: every number comes from the folder's own files.

A folder may hold a search (``summary.json`` + ``trials.json``), experiment outputs (``topk.json``,
``ablation.json``, ``baselines.json``, ``posttrain.json``, ``export.json``), or sub-folders with any
of these (``econ-ray report runs/results`` gathers a whole set of experiments). Each known file
becomes a section with a table, and its figures are drawn again from the data into the folder that
holds the file, so the report is complete even when a run was copied without its PNGs.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Lines = list[str]


# ---- formatting (pure) -------------------------------------------------------------------------


def fmt(v: Any) -> str:
    """A table cell: 4 significant digits for floats, '-' for missing or non-finite values."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def md_table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> Lines:
    """A Markdown table of ``rows``; ``cols`` defaults to every scalar key, in first-seen order."""
    if not rows:
        return ["(no rows)"]
    if cols is None:
        cols = []
        for r in rows:
            cols += [k for k, v in r.items() if k not in cols and not isinstance(v, (dict, list))]
    cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out


def _rows(data: Any) -> list[dict[str, Any]]:
    """The list of row dicts inside an experiment JSON (a bare list, or {"rows": [...]})."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    if isinstance(data, dict):
        for key in ("rows", "results", "models"):
            if isinstance(data.get(key), list):
                return [r for r in data[key] if isinstance(r, dict)]
        return [data]
    return []


def _img(folder: Path, root: Path, name: str, alt: str) -> Lines:
    p = folder / name
    return [f"![{alt}]({p.relative_to(root).as_posix()})", ""] if p.exists() else []


# ---- sections ----------------------------------------------------------------------------------


def _search(folder: Path, root: Path) -> Lines:
    from econ_ray.search.pareto import TrialPoint, pareto_front
    from econ_ray.search.plot import plot_hypervolume_history, plot_pareto
    from econ_ray.search.records import TrialRecord, points_from

    summary = json.loads((folder / "summary.json").read_text())
    records = [TrialRecord(**r) for r in json.loads((folder / "trials.json").read_text())]
    pareto = summary.get("pareto", [])
    complete = [r for r in records if r.status == "complete"]
    metric_name = (
        pareto[0]["metric_name"]
        if pareto
        else next((str(r.metrics["metric_name"]) for r in complete if r.metrics.get("metric_name")), "metric")
    )
    maximize = metric_name != "perplexity"
    points = points_from(records)
    front = pareto_front(points, maximize_metric=maximize)
    dense_metrics = sorted(
        float(r.metrics["dense_metric"]) for r in complete if isinstance(r.metrics.get("dense_metric"), (int, float))
    )
    dense_g = next(
        (float(r.metrics["dense_total_gflops"]) for r in complete if r.metrics.get("dense_total_gflops")), None
    )
    dense_pt = (
        TrialPoint("dense", dense_metrics[len(dense_metrics) // 2], dense_g) if dense_metrics and dense_g else None
    )
    seq_len = next((int(r.metrics["seq_len"]) for r in complete if r.metrics.get("seq_len")), 0)
    plot_pareto(
        points,
        front,
        folder / "pareto.png",
        metric_name=metric_name,
        seq_len=seq_len,
        dense=dense_pt,
        maximize_metric=maximize,
    )
    history: list[tuple[int, float]] = []
    hv_csv = folder / "hypervolume.csv"
    if hv_csv.exists():
        for line in hv_csv.read_text().splitlines()[1:]:
            n, hv = line.split(",")
            history.append((int(n), float(hv)))
        plot_hypervolume_history(history, folder / "hypervolume.png")
    ref = summary.get("reference_point") or [None, None]
    failed = [r for r in records if r.status != "complete"]
    out: Lines = [
        f"{summary.get('n_trials', len(records))} trials ({len(complete)} complete, {len(failed)} failed or stopped); "
        f"objectives: {metric_name} ({'max' if maximize else 'min'}) and effective GFLOPs per sequence "
        f"(L = {seq_len}, min).",
        "",
    ]
    out += md_table(
        [
            {
                "hypervolume": summary.get("hypervolume"),
                "reference metric": ref[0],
                "reference GFLOPs": ref[1],
                "dense metric (median)": dense_pt.metric if dense_pt else None,
                "dense GFLOPs": dense_g,
                "Pareto models": len(pareto),
                "registered model": summary.get("registered_model"),
            }
        ]
    ) + [""]
    out += ["**Pareto set**", ""]
    out += md_table(
        pareto,
        [
            "rank",
            "trial_id",
            "metric",
            "effective_gflops",
            "lam",
            "alpha",
            "beta",
            "tau",
            "objective",
            "attention_density",
            "ffn_density",
            "version",
        ],
    ) + [""]
    out += _img(folder, root, "pareto.png", "Pareto set")
    if history:
        out += ["**Hypervolume after each completed trial**", ""]
        out += md_table([{"trials": n, "hypervolume": hv} for n, hv in history]) + [""]
        out += _img(folder, root, "hypervolume.png", "hypervolume history")
    out += ["**All trials**", ""]
    out += md_table(
        [
            {
                "trial_id": r.trial_id,
                "status": r.status,
                **{
                    k: r.metrics.get(k)
                    for k in (
                        "lam",
                        "alpha",
                        "beta",
                        "tau",
                        "objective",
                        "metric",
                        "effective_gflops",
                        "attention_density",
                        "ffn_density",
                    )
                },
                "feasible": r.feasible,
                "reason": r.reason,
            }
            for r in sorted(records, key=lambda r: r.order)
        ]
    ) + [""]
    return out


def _topk(folder: Path, root: Path) -> Lines:
    from econ_ray.experiments.topk import write_sweep

    rows = _rows(json.loads((folder / "topk.json").read_text()))
    write_sweep(folder, rows)
    out = md_table(
        rows,
        [
            "mode",
            "k",
            "budget",
            "metric_name",
            "metric",
            "effective_gflops",
            "dense_total_gflops",
            "attention_density",
            "gini",
            "entropy_bits",
            "seq_len",
        ],
    ) + [""]
    return (
        out
        + _img(folder, root, "accuracy_vs_k.png", "metric vs k")
        + _img(folder, root, "allocation_vs_k.png", "Gini and entropy vs k")
    )


def _ablation(folder: Path, root: Path) -> Lines:
    from econ_ray.experiments.ablation import write_ablation

    rows = _rows(json.loads((folder / "ablation.json").read_text()))
    write_ablation(folder, rows)
    out = md_table(
        rows,
        [
            "variant",
            "lam",
            "alpha",
            "beta",
            "metric_name",
            "metric",
            "dense_metric",
            "effective_gflops",
            "dense_total_gflops",
            "attention_density",
            "ffn_density",
            "dead_heads",
            "dead_neurons",
            "steps",
        ],
    ) + [""]
    return out + _img(folder, root, "ablation.png", "ablation")


def _baselines(folder: Path, root: Path) -> Lines:
    """Baseline rows; drawn over the Pareto plot of the search in the same report tree, if any."""
    from econ_ray.experiments.baselines import plot_pareto_with_baselines, write_baselines

    rows = _rows(json.loads((folder / "baselines.json").read_text()))
    write_baselines(folder, rows)
    search = next((f for f in _folders(root) if _has(f, "summary.json")), None)
    out = md_table(
        rows,
        [
            "method",
            "ratio",
            "k",
            "metric_name",
            "metric",
            "effective_gflops",
            "dense_total_gflops",
            "attention_density",
            "ffn_density",
            "dead_heads",
            "dead_neurons",
        ],
    ) + [""]
    out += _img(folder, root, "baselines.png", "pruning baselines")
    if search is not None:
        plot_pareto_with_baselines(search, rows, folder / "pareto_baselines.png")
        out += [
            f"The incentive-trained trials of `{search.relative_to(root).as_posix() or '.'}/` with the "
            "baselines drawn over them:",
            "",
        ]
        out += _img(folder, root, "pareto_baselines.png", "Pareto set vs pruning baselines")
    return out


def _generic(name: str, pngs: tuple[str, ...]) -> Callable[[Path, Path], Lines]:
    def render(folder: Path, root: Path) -> Lines:
        out = md_table(_rows(json.loads((folder / name).read_text()))) + [""]
        for p in pngs:
            out += _img(folder, root, p, p.removesuffix(".png"))
        return out

    return render


# (file that marks the section, title, renderer); order = order in the report
SECTIONS: list[tuple[str, str, Callable[[Path, Path], Lines]]] = [
    ("summary.json", "Search: Pareto set of accuracy vs effective GFLOPs", _search),
    ("topk.json", "Top-k and budget sweep (no retraining)", _topk),
    ("baselines.json", "Post-hoc pruning baselines", _baselines),
    ("ablation.json", "Ablation of the compute price", _ablation),
    ("posttrain.json", "Sparse-attention post-training vs top-k", _generic("posttrain.json", ("posttrain.png",))),
    ("export.json", "Physical pruning: counted vs realised speedup (latency)", _generic("export.json", ())),
    (
        "heatmap.png",
        "Attention heatmaps: dense vs sparse",
        lambda folder, root: _img(folder, root, "heatmap.png", "heatmaps"),
    ),
]


# folders that hold copies or internals, never results of their own
_SKIP = {"tune", "checkpoints", "mlartifacts", "mlruns", "trial_records", "tracking_outbox", "model"}


def _has(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds the section marked by ``name`` (a search needs its trials too)."""
    if name == "summary.json":
        return (folder / name).is_file() and (folder / "trials.json").is_file()
    return (folder / name).is_file()


def _folders(root: Path) -> list[Path]:
    """``root`` and its sub-folders (sorted, depth-first) that hold at least one known file."""
    found = [root] if any(_has(root, n) for n, _, _ in SECTIONS) else []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _SKIP and not p.name.startswith(".")):
        found += _folders(sub)
    return found


def build_report(run_dir: str | Path, *, title: str | None = None) -> Path:
    """Write ``RUN_DIR/report.md`` (and the figures next to their data); return its path.

    Raises ``FileNotFoundError`` when the folder holds no file this report knows.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    folders = _folders(root)
    if not folders:
        known = ", ".join(n for n, _, _ in SECTIONS)
        raise FileNotFoundError(f"{root}: nothing to report (no {known} here or in a sub-folder)")
    lines: Lines = [
        f"# {title or 'econ-ray report: ' + root.resolve().name}",
        "",
        f"Written {_dt.date.today().isoformat()} by `econ-ray report {root}` from the files of this "
        "folder: every number below is read from them.",
        "",
    ]
    for folder in folders:
        for name, heading, render in SECTIONS:
            if _has(folder, name):
                where = folder.relative_to(root).as_posix()
                lines += [
                    f"## {heading}" + ("" if where == "." else f" (`{where}/`)"),
                    "",
                    f"Source: `{(folder / name).relative_to(root).as_posix()}`",
                    "",
                ]
                lines += render(folder, root)
    out = root / "report.md"
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out
