#!/usr/bin/env python3
"""One plot and one table of every method of a targeted comparison, on static GFLOPs.

Reads what scripts/targeted_comparison.sh wrote under OUT: the search run folders (``trials.json``:
the targeted search, the prune + fine-tune search, the penalised search), the prune-only rows of
``econ-ray prune`` (``baselines/baselines.json``) and the dense model's summary; writes
``OUT/comparison.md`` (a table per method, sorted by static GFLOPs, Pareto points of each method
marked) and ``OUT/comparison.png``.

    python scripts/targeted_comparison.py OUT [--title TITLE]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

SEARCHES = [
    ("targeted", "search_targeted"),
    *[("prune + fine-tune", f"search_prune_{m}") for m in ("activation", "heads", "both")],
    ("penalised", "search_penalised"),
]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def rows_of(out: Path) -> list[dict[str, Any]]:
    """Every finished trial and prune-only row as (method, static GFLOPs, metric, ...)."""
    rows: list[dict[str, Any]] = []
    for label, folder in SEARCHES:
        path = out / folder / "trials.json"
        if not path.is_file():
            continue
        for t in json.loads(path.read_text()):
            m = t.get("metrics", {})
            if t.get("status") != "complete" or not _finite(m.get("static_gflops")):
                continue
            method = m.get("method") or m.get("objective")
            rows.append(
                {
                    "group": label if label != "prune + fine-tune" else f"{method} + fine-tune",
                    "static_gflops": m["static_gflops"],
                    "effective_gflops": m.get("effective_gflops"),
                    "metric": m["metric"],
                    "target_gflops": m.get("target_gflops"),
                    "knob": m.get("target_ratio") if m.get("target_ratio") is not None else m.get("lam"),
                }
            )
    base = out / "baselines" / "baselines.json"
    if base.is_file():
        for r in json.loads(base.read_text()):
            if r["method"] in ("dense", "topk") or not _finite(r.get("static_gflops")):
                continue
            rows.append(
                {
                    "group": f"prune-{r['method'].removeprefix('ffn-')} only",
                    "static_gflops": r["static_gflops"],
                    "effective_gflops": r.get("effective_gflops"),
                    "metric": r["metric"],
                    "target_gflops": None,
                    "knob": r["ratio"],
                }
            )
    return rows


def pareto_flags(rows: list[dict[str, Any]]) -> list[bool]:
    """Non-dominated within its group (higher metric, lower static GFLOPs)."""
    flags = []
    for r in rows:
        same = [q for q in rows if q["group"] == r["group"] and q is not r]
        flags.append(
            not any(
                q["metric"] >= r["metric"]
                and q["static_gflops"] <= r["static_gflops"]
                and (q["metric"] > r["metric"] or q["static_gflops"] < r["static_gflops"])
                for q in same
            )
        )
    return flags


def verdicts(rows: list[dict[str, Any]], d_g: float, d_m: float, points: float) -> list[str]:
    """The issue's targets, computed: does the targeted set cover every other point (a targeted model
    at no more static GFLOPs with no lower metric), and how far from dense is the best targeted model
    at 2x and 3x static speedup (``points``: the metric's scale of one point, 0.01 for accuracy and
    Pearson)."""
    tgt = [r for r in rows if r["group"] == "targeted"]
    out = []
    if not tgt:
        return ["no targeted trial finished"]
    lo = min(r["static_gflops"] for r in tgt)
    for group in sorted({r["group"] for r in rows} - {"targeted"}):
        pts = [r for r in rows if r["group"] == group]
        inside = [r for r in pts if r["static_gflops"] >= lo]
        beaten = [
            r
            for r in inside
            if not any(t["static_gflops"] <= r["static_gflops"] and t["metric"] >= r["metric"] for t in tgt)
        ]
        gaps = ", ".join(
            f"{r['static_gflops']:.4f} GFLOPs: {r['metric']:.4f} vs targeted "
            f"{max(t['metric'] for t in tgt if t['static_gflops'] <= r['static_gflops']):.4f}"
            for r in beaten
        )
        below = len(pts) - len(inside)
        out.append(
            f"- {group}: targeted covers {len(inside) - len(beaten)} of {len(inside)} points in its range"
            + (f" (not covered: {gaps})" if beaten else "")
            + (f"; {below} cheaper than every targeted model" if below else "")
        )
    for speedup, allowed in ((2.0, 1.0), (3.0, 3.0)):
        fast = [r for r in tgt if d_g / r["static_gflops"] >= speedup - 1e-9]
        if not fast:
            out.append(f"- at {speedup:.0f}x: no targeted model that fast")
            continue
        best = max(fast, key=lambda r: r["metric"])
        gap = (d_m - best["metric"]) / points
        ok = "met" if gap <= allowed else "missed"
        out.append(
            f"- at >= {speedup:.0f}x: best targeted {best['metric']:.4f} at {d_g / best['static_gflops']:.2f}x, "
            f"{-gap:+.2f} points vs dense (target: within {allowed:.0f}): {ok}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    out: Path = args.out
    dense = json.loads((out / "dense" / "econ.json").read_text())["summary"]
    rows = rows_of(out)
    flags = pareto_flags(rows)
    d_g, d_m = dense["dense_total_gflops"], dense["metric"]
    lines = [
        f"dense: {dense['metric_name']} {d_m:.4f} at {d_g:.4f} GFLOPs (L = {dense['seq_len']})",
        "",
        "| method | knob | target GFLOPs | static GFLOPs | static speedup | effective GFLOPs | metric | vs dense | Pareto in its method |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["group"], rows[i]["static_gflops"]))
    for i in order:
        r = rows[i]
        tg = f"{r['target_gflops']:.4f}" if _finite(r["target_gflops"]) else ""
        eff = f"{r['effective_gflops']:.4f}" if _finite(r["effective_gflops"]) else ""
        lines.append(
            f"| {r['group']} | {r['knob']:.3g} | {tg} | {r['static_gflops']:.4f} | {d_g / r['static_gflops']:.2f}x "
            f"| {eff} | {r['metric']:.4f} | {r['metric'] - d_m:+.4f} | {'yes' if flags[i] else ''} |"
        )
    lines += ["", "Targets (targeted against every other method, and against dense):", ""]
    lines += verdicts(rows, d_g, d_m, 0.01)
    exports = sorted((out / "export").glob("*/export.json"))
    if exports:
        lines += [
            "",
            "| export | format | counted static speedup | realised (batch 1, CPU) | p10-p90 | realised / counted |",
        ]
        lines += ["|---|---|---|---|---|---|"]
        for e in exports:
            x = json.loads(e.read_text())
            spread = x.get("realised_speedup_p10_p90") or ["", ""]
            spread_s = f"{spread[0]:.2f}-{spread[1]:.2f}" if spread[0] != "" else ""
            lines.append(
                f"| {e.parent.name} | {x.get('format', '')} | {x['structural_speedup']:.2f}x | {x['realised_speedup']:.2f}x "
                f"| {spread_s} | {x['realised_speedup'] / x['structural_speedup']:.2f} |"
            )
    (out / "comparison.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for k, group in enumerate(sorted({r["group"] for r in rows})):
        pts = sorted((r["static_gflops"], r["metric"]) for r in rows if r["group"] == group)
        style = "-" if "only" not in group else ":"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", ms=4, color=f"C{k}", label=group)
    ax.plot([d_g], [d_m], "*", ms=14, color="black", label="dense")
    ax.set_xlabel(f"static GFLOPs per sequence (batch 1, L = {dense['seq_len']})")
    ax.set_ylabel(dense["metric_name"])
    ax.set_title(args.title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "comparison.png", dpi=150)
    print(f"{out / 'comparison.md'}, {out / 'comparison.png'}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
