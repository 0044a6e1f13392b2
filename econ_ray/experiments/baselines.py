"""Post-hoc pruning baselines (issue 4 item 2): a trained dense model pruned at several ratios, no retraining.

Methods (``ratio`` = fraction of units removed):

* ``ffn-magnitude``: FFN neurons with the lowest ``||W1_i|| * ||W2^i||``, the same ratio in every layer;
* ``ffn-activation``: FFN neurons with the lowest mean |activation| on calibration batches, per layer;
* ``heads``: attention heads with the lowest importance of Michel et al. 2019 (per-layer normalised),
  removed globally, so some layers may lose more heads than others;
* ``topk``: top-k attention (``econ_ray.experiments.topk``) with ``k = max(1, round((1 - ratio) * L))``.

Each row is one evaluation with ``econ_ray.training.evaluate``, so ``metric`` and ``effective_gflops``
mean exactly what they mean for the search's trials and the rows can be drawn on its Pareto plot
(:func:`plot_pareto_with_baselines`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from econ_ray.attention.runtime import EconRuntime
from econ_ray.compute.shape import model_dims
from econ_ray.data import EncodedSplit, TaskSpec
from econ_ray.surgery import masks, scores
from econ_ray.training.evaluate import evaluate

METHODS = ("ffn-magnitude", "ffn-activation", "heads", "topk")
ROW_KEYS = (
    "metric_name",
    "metric",
    "ce",
    "static_gflops",
    "effective_gflops",
    "dense_total_gflops",
    "dense_gflops",
    "attention_density",
    "ffn_density",
    "dead_heads",
    "dead_neurons",
    "seq_len",
)


def parse_methods(text: str) -> list[str]:
    """Comma-separated method names; ValueError naming the bad one."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ValueError(f"--method: unknown method {bad[0] if bad else text!r}; expected some of {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def parse_ratios(text: str) -> list[float]:
    """Comma-separated pruning ratios, each in [0, 1); ValueError otherwise."""
    try:
        ratios = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--ratios: not numbers: {text!r}") from None
    if not ratios:
        raise ValueError("--ratios: give at least one ratio, e.g. 0.1,0.3,0.5")
    for r in ratios:
        try:
            scores.check_ratio(r)
        except ValueError:
            raise ValueError(f"--ratios: {r} is not in [0, 1) (fraction of units removed)") from None
    return ratios


def topk_k(ratio: float, seq_len: int) -> int:
    """Edges kept per query for a top-k baseline that removes ``ratio`` of a full row of ``seq_len``."""
    return max(1, int(round((1.0 - scores.check_ratio(ratio)) * seq_len)))


def _row(method: str, ratio: float, ev: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"method": method, "ratio": ratio, **{k: ev.get(k) for k in ROW_KEYS}, **extra}


def run_baselines(
    model: torch.nn.Module,
    rt: EconRuntime,
    validation: EncodedSplit,
    calibration: EncodedSplit,
    task: TaskSpec,
    *,
    seq_len: int,
    methods: list[str],
    ratios: list[float],
    batch_size: int = 64,
    calib_batches: int = 8,
) -> list[dict[str, Any]]:
    """One dense row (``method="dense"``, ratio 0) then one row per (method, ratio).

    Scores are fitted once per method on ``calibration_batches`` batches of ``calibration`` (never the
    validation split the metric is reported on). Masks are cleared afterwards; the model is unchanged.
    """
    if rt.mode != "dense":
        raise ValueError(f"post-hoc baselines prune a dense model; this one evaluates in mode {rt.mode!r}")
    device = next(model.parameters()).device

    def ev() -> dict[str, Any]:
        return evaluate(model, rt, validation, task, batch_size=batch_size, seq_len=seq_len, distribution=False)

    rows = [_row("dense", 0.0, ev())]
    n_layers, n_heads = len(masks.blocks(model)), model_dims(model.config).n_heads
    for method in methods:
        if method == "topk":
            from econ_ray.experiments.topk import sweep

            ks = [topk_k(r, seq_len) for r in ratios]
            swept = [
                r
                for r in sweep(model, rt, validation, task, seq_len=seq_len, ks=ks, batch_size=batch_size)
                if r["mode"] == "topk"
            ]
            rows += [_row("topk", ratio, r, k=r["k"]) for ratio, r in zip(ratios, swept)]
            continue
        if method == "heads":
            raw = masks.head_importance(model, rt, calibration, task, batch_size=batch_size, n_batches=calib_batches)
            importance = scores.normalise_per_layer(raw)
            for ratio in ratios:
                keep = scores.keep_lowest_removed(importance, ratio)
                with masks.masked(rt, heads=keep, device=device):
                    rows.append(
                        _row(method, ratio, ev(), pruned_heads=int((~keep).sum()), total_heads=n_layers * n_heads)
                    )
            continue
        if method == "ffn-magnitude":
            per_layer = [scores.ffn_magnitude_scores(w1, w2).cpu() for w1, w2 in masks.ffn_weight_pairs(model)]
        else:  # ffn-activation
            sums, tokens = masks.activation_sums(model, rt, calibration, batch_size=batch_size, n_batches=calib_batches)
            per_layer = [scores.mean_abs(s, tokens) for s in sums]
        for ratio in ratios:
            keep_neurons = scores.keep_per_layer(per_layer, ratio)
            with masks.masked(rt, neurons=keep_neurons, device=device):
                rows.append(
                    _row(
                        method,
                        ratio,
                        ev(),
                        pruned_neurons=int(sum(int((~k).sum()) for k in keep_neurons)),
                        total_neurons=int(sum(k.numel() for k in keep_neurons)),
                    )
                )
    return rows


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def draw_baselines(ax: Any, rows: list[dict[str, Any]]) -> None:
    """One line per method (metric vs effective GFLOPs, the dense row as the first point), onto ``ax``."""
    dense = next((r for r in rows if r["method"] == "dense"), None)
    markers = {"ffn-magnitude": "s", "ffn-activation": "D", "heads": "^", "topk": "v"}
    for i, method in enumerate(m for m in dict.fromkeys(r["method"] for r in rows) if m != "dense"):
        pts = [r for r in rows if r["method"] == method and _finite(r["metric"]) and _finite(r["effective_gflops"])]
        pts = ([dense] if dense else []) + sorted(pts, key=lambda r: r["ratio"])
        ax.plot(
            [r["effective_gflops"] for r in pts],
            [r["metric"] for r in pts],
            linestyle="--",
            linewidth=1.0,
            marker=markers.get(method, "o"),
            markersize=4,
            color=f"C{i + 1}",
            label=f"post-hoc {method}",
            zorder=3,
        )


def write_baselines(out_dir: str | Path, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """``baselines.json`` and ``baselines.png`` (metric vs effective GFLOPs, one line per method)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps(rows, indent=2, default=str))
    fig = Figure(figsize=(6.4, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_baselines(ax, rows)
    dense = next((r for r in rows if r["method"] == "dense"), None)
    if dense:
        ax.plot(
            [dense["effective_gflops"]],
            [dense["metric"]],
            "*",
            markersize=13,
            color="C3",
            markeredgecolor="black",
            label="dense",
            zorder=5,
        )
    ax.set_xlabel(f"effective GFLOPs per sequence (batch 1, L = {rows[0]['seq_len']})")
    ax.set_ylabel(rows[0]["metric_name"])
    ax.set_title("post-hoc pruning, no retraining")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "baselines.png", dpi=150)
    return {"json": out / "baselines.json", "plot": out / "baselines.png"}


def plot_pareto_with_baselines(run_dir: str | Path, rows: list[dict[str, Any]], path: str | Path) -> Path:
    """The search's Pareto plot (from ``RUN_DIR/trials.json``) with the baseline curves drawn over it.

    Compare only like with like: the baselines should come from the same task, model shape and
    sequence length as the search (the x axes are then the same count).
    """
    from econ_ray.metrics.task import higher_is_better
    from econ_ray.search.pareto import pareto_front
    from econ_ray.search.plot import plot_pareto
    from econ_ray.search.records import TrialRecord, points_from

    records = [TrialRecord(**r) for r in json.loads((Path(run_dir) / "trials.json").read_text())]
    points = points_from(records)
    metric_name = rows[0]["metric_name"]
    maximize = higher_is_better(metric_name)
    return plot_pareto(
        points,
        pareto_front(points, maximize_metric=maximize),
        path,
        metric_name=metric_name,
        seq_len=int(rows[0]["seq_len"]),
        maximize_metric=maximize,
        title="search Pareto set vs post-hoc pruning",
        extra=lambda ax: draw_baselines(ax, rows),
    )
