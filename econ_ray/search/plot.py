"""Figures of a finished search: the accuracy-vs-compute Pareto plot and the hypervolume history.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly rather than ``pyplot``: no global
backend switch and no global figure registry, so it is safe on a headless Ray head node and in
threads, and it never leaks figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from econ_ray.search.pareto import TrialPoint

__all__ = ["plot_hypervolume_history", "plot_pareto"]

_DPI = 150


def _new_figure(figsize: tuple[float, float] = (6.4, 4.8)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself to ``fig``; savefig then renders PNG without pyplot
    return fig


def _save(fig, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI, format="png", bbox_inches="tight")
    return out


def plot_pareto(
    points: Sequence[TrialPoint],
    front: Sequence[TrialPoint],
    path: str | Path,
    *,
    metric_name: str,
    seq_len: int,
    dense: TrialPoint | None = None,
    maximize_metric: bool = True,
    title: str | None = None,
    extra: Callable[[Any], None] | None = None,
    cost_label: str = "effective GFLOPs",
    per_sequence: bool = True,
) -> Path:
    """Scatter every trial (coloured by method when the trials used more than one), draw the Pareto set as a staircase, mark the dense model; save a PNG.

    Args:
        points: all trials.  Feasible complete ones are grey dots, infeasible complete ones grey
            ``x`` markers; failed or early-stopped ones (``complete=False``) are not drawn, since
            their numbers are not final.
        front: the Pareto set (as from :func:`econ_ray.search.pareto.pareto_front`); drawn as a
            step line with markers, sorted here by GFLOPs.  May be empty.
        path: where the PNG goes (parent folders are created).
        metric_name: y-axis label, e.g. ``"accuracy"`` or ``"perplexity"``.
        seq_len: the sequence length L at which GFLOPs were counted (x-axis label).
        dense: the dense lambda = 0 model, drawn as a star labelled "dense"; optional.
        maximize_metric: False when lower is better (perplexity); only changes the legend text
            of the Pareto set.
        title: figure title; optional.
        extra: called with the axes before the legend is made, to draw more on the same axes
            (e.g. post-hoc pruning curves, ``econ_ray.experiments.baselines.draw_baselines``).
        cost_label: what the x axis counts (``static GFLOPs`` for a search with ``search.cost: static``).

    Returns:
        ``Path(path)``.  The x axis is the cost per sequence (batch 1); the y axis is the
        metric in its own units.
    """
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)

    done = [p for p in points if p.complete]
    feasible = [p for p in done if p.feasible]
    infeasible = [p for p in done if not p.feasible]
    methods = sorted({str(p.params.get("method")) for p in feasible if p.params.get("method")})
    if len(methods) > 1:
        for i, method in enumerate(methods):
            group = [p for p in feasible if str(p.params.get("method")) == method]
            ax.scatter(
                [p.gflops for p in group],
                [p.metric for p in group],
                s=18,
                color=f"C{(i + 1) % 10}",
                label=f"trials: {method}",
                zorder=2,
            )
    elif feasible:
        ax.scatter(
            [p.gflops for p in feasible], [p.metric for p in feasible], s=18, color="0.6", label="trials", zorder=2
        )
    if infeasible:
        ax.scatter(
            [p.gflops for p in infeasible],
            [p.metric for p in infeasible],
            s=22,
            marker="x",
            color="0.6",
            linewidths=1.0,
            label="infeasible trials",
            zorder=2,
        )

    ordered = sorted(front, key=lambda p: p.gflops)
    if ordered:
        xs = [p.gflops for p in ordered]
        ys = [p.metric for p in ordered]
        # where="post": each front point's metric holds until the next cheaper-to-better step,
        # which is exactly the attainment staircase whose area is the hypervolume.
        ax.step(xs, ys, where="post", color="C0", linewidth=1.5, zorder=3)
        direction = "higher" if maximize_metric else "lower"
        ax.plot(
            xs,
            ys,
            linestyle="none",
            marker="o",
            markersize=5,
            color="C0",
            label=f"Pareto set ({direction} {metric_name} is better)",
            zorder=4,
        )

    if dense is not None:
        ax.plot(
            [dense.gflops],
            [dense.metric],
            linestyle="none",
            marker="*",
            markersize=14,
            color="C3",
            markeredgecolor="black",
            label="dense (the trials' start)",
            zorder=5,
        )
        ax.annotate("dense", (dense.gflops, dense.metric), textcoords="offset points", xytext=(6, 6), fontsize=9)

    if extra is not None:
        extra(ax)
    per = " per sequence (batch 1," if per_sequence else " ("  # a fraction of the dense work is per nothing
    ax.set_xlabel(f"{cost_label}{per} L = {seq_len})")
    ax.set_ylabel(metric_name)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def plot_hypervolume_history(
    history: Sequence[tuple[int, float]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Plot ``(trials completed, hypervolume)`` pairs as a step line; save a PNG at 150 dpi.

    ``history`` is :func:`econ_ray.search.pareto.hypervolume_history`'s output; the hypervolume is
    in metric units x GFLOPs.  An empty history gives empty axes.  Returns ``Path(path)``.
    """
    fig = _new_figure()
    ax = fig.add_subplot(1, 1, 1)
    if history:
        xs = [n for n, _ in history]
        ys = [hv for _, hv in history]
        ax.step(xs, ys, where="post", color="C0", marker="o", markersize=3)
    ax.set_xlabel("trials completed")
    ax.set_ylabel("hypervolume")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
