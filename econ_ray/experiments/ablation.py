"""Ablation of the compute price (seed 000 Table 4): attention only, FFN only, both, at one lambda.

Every variant starts from the same initial weights and trains the same number of steps (dense phase
plus main phase) with the same seed, so the rows differ only by what is priced:

=============  =====  =====  ==========================================================
variant        alpha  beta   what it shows
=============  =====  =====  ==========================================================
dense          -      -      lambda = 0, dense attention: the same steps without a price
attention      1      0      penalty on attention edges only (beta = 0)
ffn            0      1      penalty on FFN activations only (alpha = 0)
both           1      1      the full objective
=============  =====  =====  ==========================================================

The dense row doubles as the control METHOD section 3 asks for: extra training without gates.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from econ_ray.config.schema import RunConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "dense": {"attention.mode": "dense", "objective.lam": 0.0},
    "attention": {"attention.mode": "gates", "objective.alpha": 1.0, "objective.beta": 0.0},
    "ffn": {"attention.mode": "gates", "objective.alpha": 0.0, "objective.beta": 1.0},
    "both": {"attention.mode": "gates", "objective.alpha": 1.0, "objective.beta": 1.0},
}
ROW_KEYS = (
    "metric_name",
    "metric",
    "ce",
    "effective_gflops",
    "dense_total_gflops",
    "attention_density",
    "ffn_density",
    "dead_heads",
    "dead_neurons",
    "gini",
    "entropy_bits",
    "seq_len",
    "steps",
)


def variant_config(cfg: RunConfig, variant: str, lam: float) -> RunConfig:
    """The run config of one ablation variant (penalised objective at price ``lam``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r}; expected one of {sorted(VARIANTS)}")
    data = {k: v for k, v in cfg.model_dump().items() if k in RunConfig.model_fields}
    data["objective"].update(kind="penalised", tau=None, tau_rel=None, lam=lam)
    data["attention"].update(k=None, budget=None)
    for dotted, value in VARIANTS[variant].items():
        section, key = dotted.split(".")
        data[section][key] = value
    return RunConfig.model_validate(data)


def run_ablation(cfg: RunConfig, lam: float, variants: list[str] | None = None) -> list[dict[str, Any]]:
    """Train each variant from the same initial weights; one row per variant."""
    from econ_ray.training import prepare, train_run

    names = variants or list(VARIANTS)
    for v in names:
        variant_config(cfg, v, lam)  # fail on a bad variant before any training
    prepared = prepare(variant_config(cfg, names[0], lam))
    init_state = copy.deepcopy(prepared.model.state_dict())
    rows = []
    for v in names:
        vcfg = variant_config(cfg, v, lam)
        prepared.model.load_state_dict(init_state)
        prepared.cfg = vcfg
        res = train_run(vcfg, prepared=prepared)
        s = res.summary
        rows.append(
            {
                "variant": v,
                "lam": vcfg.objective.lam,
                "alpha": vcfg.objective.alpha if v != "dense" else None,
                "beta": vcfg.objective.beta if v != "dense" else None,
                "dense_metric": s.get("dense_metric"),
                **{k: s.get(k) for k in ROW_KEYS},
            }
        )
    return rows


def write_ablation(out_dir: str | Path, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """``ablation.json`` and ``ablation.png`` (metric vs effective GFLOPs, one point per variant)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(rows, indent=2))
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        ax.scatter([r["effective_gflops"]], [r["metric"]], s=60, label=r["variant"])
        ax.annotate(r["variant"], (r["effective_gflops"], r["metric"]), textcoords="offset points", xytext=(5, 5))
    lam = next((r["lam"] for r in rows if r["variant"] != "dense"), None)
    ax.set_xlabel(f"effective GFLOPs per sequence (L = {rows[0]['seq_len']})")
    ax.set_ylabel(rows[0]["metric_name"])
    ax.set_title(f"ablation of the compute price at lambda = {lam:g}" if lam is not None else "ablation")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=150)
    return {"json": out / "ablation.json", "plot": out / "ablation.png"}
