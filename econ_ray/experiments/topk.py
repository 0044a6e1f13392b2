"""Top-k and budget sweeps at inference (METHOD section 4; seed 000 Tables 1-2): no retraining.

For each k (and each budget B) the same trained model is evaluated with top-k (or threshold)
attention: task metric, dense and effective GFLOPs, attention density, Gini and entropy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from econ_ray.attention.runtime import EconRuntime
from econ_ray.data import EncodedSplit, TaskSpec
from econ_ray.training.evaluate import evaluate

ROW_KEYS = (
    "k",
    "budget",
    "metric_name",
    "metric",
    "ce",
    "effective_gflops",
    "dense_gflops",
    "dense_total_gflops",
    "attention_density",
    "ffn_density",
    "dead_heads",
    "dead_neurons",
    "gini",
    "entropy_bits",
    "seq_len",
)


def sweep(
    model: nn.Module,
    rt: EconRuntime,
    split: EncodedSplit,
    task: TaskSpec,
    *,
    seq_len: int,
    ks: list[int],
    budgets: list[float] | None = None,
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """One row per k (``mode=topk``) and per budget (``mode=budget``), plus the dense reference row."""
    rows = []
    plan = [("dense", None, None)] + [("topk", k, None) for k in ks] + [("budget", None, b) for b in budgets or []]
    for mode, k, b in plan:
        with rt.override(mode=mode, k=k, budget=b):
            ev = evaluate(model, rt, split, task, batch_size=batch_size, seq_len=seq_len)
        rows.append({"mode": mode, **{key: ev.get(key) for key in ROW_KEYS}, "k": k, "budget": b})
    return rows


def write_sweep(out_dir: str | Path, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """``topk.json``, ``accuracy_vs_k.png`` and ``allocation_vs_k.png`` (Gini and entropy vs k, log axis)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "topk.json").write_text(json.dumps(rows, indent=2))
    topk = sorted((r for r in rows if r["mode"] == "topk"), key=lambda r: r["k"])
    dense = next((r for r in rows if r["mode"] == "dense"), None)
    paths = {"json": out / "topk.json"}
    if not topk:
        return paths
    ks = [r["k"] for r in topk]
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(ks, [r["metric"] for r in topk], "o-", label="top-k")
    if dense:
        ax.axhline(dense["metric"], color="grey", ls="--", label="dense")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"k (edges kept per query; L = {topk[0]['seq_len']})")
    ax.set_ylabel(topk[0]["metric_name"])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_k.png", dpi=150)
    paths["accuracy"] = out / "accuracy_vs_k.png"

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(ks, [r["gini"] for r in topk], "o-", color="tab:red", label="Gini")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"k (edges kept per query; L = {topk[0]['seq_len']})")
    ax.set_ylabel("Gini of attention rows")
    ax2 = ax.twinx()
    ax2.plot(ks, [r["entropy_bits"] for r in topk], "s--", color="tab:blue", label="entropy")
    ax2.set_ylabel("entropy (bits)")
    ax.grid(alpha=0.3)
    fig.legend(loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(out / "allocation_vs_k.png", dpi=150)
    paths["allocation"] = out / "allocation_vs_k.png"
    return paths
