"""Sparse-attention post-training of a trained model against top-k at the same budget (seed 003).

A causal LM (seed 003's setting; CE in nats per predicted token) or a bidirectional encoder with a
classification or regression head (issue 18: a pretrained encoder fine-tuned dense first; CE of its head,
and its task metric beside it); only the count of valid keys per query differs (below).

Protocol (METHOD sections 3 and 7), for one search-space file and a list of eps:

1. **The dense model.** A saved econ-ray model folder (``model_dir``), a pretrained model named by
   ``model.name`` with ``objective.dense_reference: model``, or the file's model trained dense for
   ``objective.dense_steps`` steps (``train_run`` with the dense mode and no objective terms). Its
   held-out CE is CE_dense.
2. **Post-training, once per eps.** From the same dense weights (gate biases back at
   ``attention.gate_bias_init``, so every gate starts open), ``train_run`` in ``mode="gates"`` with
   the constrained objective ``CE <= tau = (1 + eps) * CE_dense`` for ``training.max_steps`` steps:
   the multiplier reads held-out CE under deterministic gates, and the sparsest snapshot certified on
   held-out rows it never reads is kept (``econ_ray.objectives.constrained``). All weights train, as in seed 003, where the
   gate logit is q_i . k_j itself (``freeze_weights=True`` trains only the per-head gate biases: a
   learned logit threshold per head, an ablation).
3. **Dense continued.** The dense model trained ``training.max_steps`` more steps with the same
   optimiser, dense: post-training is also extra training, so part of a met ceiling may be paid by it.
4. **Top-k on the dense model** (no retraining, the seed's comparison) at the same mean number of
   kept edges per query as each gated point.

**Kept fraction and edges per query.** Kept fraction = kept / valid edges over all layers, heads and
validation tokens, where valid = causal and not padding (``attention_density``; an encoder has no causal mask). Edges
per query = kept edges / valid query rows (one row per layer, head and real token) = kept fraction x
the mean number of valid keys per query, which depends only on the data (a causal query at position i
has i + 1 valid keys, an encoder's query has every real token of its example), not on the attention mode.

**How top-k is matched.** Top-k keeps min(k, i + 1) edges at position i, so its edges per query is
not k: it is ``sum_rows min(k, n_row) / rows``, computed exactly from the validation attention masks
(``topk_edges_per_query``). For a gated point with E edges per query we evaluate the two integers
k_lo <= k_hi whose top-k edges per query bracket E (k_lo is absent when E is below top-1's count,
k_hi when E is above the dense count), and report the top-k CE linearly interpolated in edges per
query between them (``topk_ce_at_match``). Ties at the k-th logit may keep a few more edges; the
measured edges per query of each top-k row are reported beside the computed ones. We also evaluate
``mode="budget"`` with B = max(E, 1): one logit threshold per layer and example found by bisection so
that the example's mean kept edges per query row is B (each row keeps its strongest edge, hence B >= 1).

Everything is measured on the validation split with deterministic gates; CE is nats per predicted
token. ``posttrain.json`` holds the rows, ``posttrain.png`` plots CE against kept fraction.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from econ_ray.attention.runtime import EconRuntime, gate_parameters, runtime_of
from econ_ray.config.schema import RunConfig
from econ_ray.data import encode_split, load_task_for
from econ_ray.experiments.topk import sweep
from econ_ray.training.evaluate import evaluate
from econ_ray.training.loop import (
    Prepared,
    RunHooks,
    heldout_parts,
    prepare,
    resolve_device,
    seed_everything,
    train_run,
)

ROW_KEYS = (
    "method",
    "eps",
    "tau",
    "tau_aim",
    "tau_validation",
    "k",
    "budget",
    "ce",
    "ce_heldout",
    "perplexity",
    "metric",
    "kept_fraction",
    "edges_per_query",
    "edges_per_query_expected",
    "empty_row_fraction",
    "effective_gflops",
    "feasible",
    "snapshot_step",
    "ce_certified",
    "constrain",
    "kl_teacher",
    "kl_certified",
    "infeasible_reason",
    "multiplier",
    "steps",
    "matched_eps",
    "match",
)

# what each post-training step records in ``trajectories`` (the evaluations keep their whole records:
# validation CE, metric and density, and the certification rows' CE and density)
TRAJECTORY_KEYS = (
    "step",
    "multiplier",
    "constraint_ce",
    "constraint_kl",
    "constraint_tau",
    "cost",
    "task_loss",
    "loss",
    "lr",
)


def _recorder(into: list[dict[str, Any]]) -> Any:
    """An ``on_step`` hook that appends each step's ``TRAJECTORY_KEYS`` to ``into``."""

    def on_step(rec: dict[str, Any]) -> None:
        into.append({k: rec.get(k) for k in TRAJECTORY_KEYS})

    return on_step


# ---- counting edges --------------------------------------------------------------------------------


def valid_keys_per_row(attention_mask: torch.Tensor, *, causal: bool = True) -> torch.Tensor:
    """(rows,) valid keys of every real query position: for a causal LM the real tokens up to and
    including it (position i of an unpadded sequence has i + 1), for an encoder every real token of
    its example."""
    m = attention_mask.long()
    if causal:
        return torch.cumsum(m, dim=-1)[m.bool()]
    return m.sum(dim=-1, keepdim=True).expand_as(m)[m.bool()]


def topk_edges_per_query(attention_mask: torch.Tensor, k: int, *, causal: bool = True) -> float:
    """Mean edges per query that top-k keeps: mean of min(k, valid keys), ties aside."""
    n = valid_keys_per_row(attention_mask, causal=causal).double()
    return float(n.clamp(max=k).mean())


def bracket_ks(
    attention_mask: torch.Tensor, edges: float, max_k: int, *, causal: bool = True
) -> tuple[int | None, int | None]:
    """(k_lo, k_hi): the largest k whose top-k edges per query is <= ``edges`` and the smallest whose is
    >= it; None where no k qualifies (below top-1, above dense). Only k up to the longest row's valid
    keys are candidates: beyond it top-k is dense, and below it the count rises strictly with k."""
    max_k = min(max_k, int(valid_keys_per_row(attention_mask, causal=causal).max()))
    counts = {k: topk_edges_per_query(attention_mask, k, causal=causal) for k in range(1, max_k + 1)}
    lo = [k for k, c in counts.items() if c <= edges + 1e-9]
    hi = [k for k, c in counts.items() if c >= edges - 1e-9]
    return (max(lo) if lo else None), (min(hi) if hi else None)


def mean_valid_keys(rt: EconRuntime) -> float:
    """Valid edges / valid query rows of the last ``evaluate`` (its per-layer sums stay in ``rt.stats``)."""
    valid = sum(st.valid for st in rt.stats.values())
    rows = sum(st.rows for st in rt.stats.values())
    if not rows:
        raise ValueError("no attention statistics: run evaluate() first")
    return valid / rows


# ---- the dense model ---------------------------------------------------------------------------------


def prepare_from_folder(cfg: RunConfig, folder: str | Path) -> Prepared:
    """A ``Prepared`` whose model and tokenizer come from a saved econ-ray folder and whose data come
    from ``cfg`` (encoded with the folder's tokenizer); the model is set to dense attention."""
    from econ_ray.modeling import load_model

    seed_everything(cfg.training.seed)
    device = resolve_device(cfg.training.device)
    model, tokenizer, meta = load_model(folder, device=device)
    d = cfg.data
    splits = load_task_for(d, seed=cfg.training.seed)
    enc = {
        name: encode_split(getattr(splits, name), splits.task, tokenizer, d.max_length, packing=d.packing)
        for name in ("train", "validation", "heldout")
    }
    rt = runtime_of(model)
    rt.set_mode("dense")
    rt.keep_strongest = cfg.attention.keep_strongest
    return Prepared(cfg, splits.task, tokenizer, model, rt, enc["train"], enc["validation"], enc["heldout"], device)


def _variant(cfg: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``cfg`` with dotted-path changes, validated."""
    data = {k: v for k, v in cfg.model_dump().items() if k in RunConfig.model_fields}
    for key, value in changes.items():
        node = data
        *head, last = key.split(".")
        for part in head:
            node = node[part]
        node[last] = value
    return RunConfig.model_validate(data)


def _dense_cfg(cfg: RunConfig, steps: int) -> RunConfig:
    """Plain dense training for ``steps`` steps, no objective terms, one evaluation at the end."""
    return _variant(
        cfg,
        **{
            "attention.mode": "dense",
            "attention.k": None,
            "attention.budget": None,
            "objective.kind": "penalised",
            "objective.lam": 0.0,
            "objective.tau": None,
            "objective.tau_rel": None,
            "objective.dense_reference": "model",
            "training.max_steps": steps,
            "training.eval_every": steps,
            "training.early_stopping_patience": None,
        },
    )


def _reset_gates(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in gate_parameters(model):
            p.fill_(value)


# ---- the experiment --------------------------------------------------------------------------------


def _row(method: str, ev: dict[str, Any], valid_keys: float, **extra: Any) -> dict[str, Any]:
    """One row of the table; ``metric`` is the task's (perplexity for a causal LM, where it is also
    ``perplexity``)."""
    row: dict[str, Any] = {key: None for key in ROW_KEYS}
    lm = ev.get("metric_name", "perplexity") == "perplexity"
    row.update(
        method=method,
        ce=ev["ce"],
        metric=ev.get("metric"),
        perplexity=ev.get("perplexity", ev.get("metric")) if lm else None,
        kept_fraction=ev["attention_density"],
        edges_per_query=ev["attention_density"] * valid_keys,
        empty_row_fraction=ev.get("empty_row_fraction"),
        effective_gflops=ev.get("effective_gflops"),
    )
    row.update(extra)
    return row


def run_posttrain(
    cfg: RunConfig,
    eps_values: list[float],
    *,
    model_dir: str | Path | None = None,
    freeze_weights: bool = False,
    continued: bool = True,
    extra_ks: list[int] | None = None,
    save_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The experiment of the module docstring; returns {"rows": [...], "seq_len", "ce_dense", ...}. With
    ``save_dir`` the dense model, each eps's post-trained model (its certified snapshot) and the continued
    dense model are saved as model folders there (``dense``, ``gates_eps<eps>``, ``dense_continued``; each
    row's ``model_dir``), for ``econ-ray circuit``, ``heatmap`` and ``export``."""
    if not eps_values or any(e < 0 for e in eps_values):
        raise ValueError(f"eps values must be >= 0 and at least one, got {eps_values}")
    p = prepare_from_folder(cfg, model_dir) if model_dir else prepare(cfg)
    causal = p.task.kind == "lm"
    model, rt, L = p.model, p.runtime, cfg.data.max_length
    eval_bs = max(cfg.training.batch_size, 64)
    post_steps = cfg.training.max_steps or max(1, len(p.train) // cfg.training.batch_size)

    # 1. the dense model
    dense_steps = 0
    if model_dir is None and cfg.objective.dense_reference == "warmup" and cfg.objective.dense_steps > 0:
        dense_steps = cfg.objective.dense_steps
        seed_everything(cfg.training.seed)
        train_run(_dense_cfg(cfg, dense_steps), prepared=p)
    _reset_gates(model, cfg.attention.gate_bias_init)
    dense_state = copy.deepcopy(model.state_dict())
    rt.set_mode("dense")
    ev = evaluate(model, rt, p.validation, p.task, batch_size=eval_bs, seq_len=L, distribution=False)
    valid_keys = mean_valid_keys(rt)
    from econ_ray.training.evaluate import task_loss_and_outputs

    ce_dense_all, _, _ = task_loss_and_outputs(model, p.heldout, p.task, batch_size=eval_bs)
    # tau's reference: the certification rows of the held-out split (the constrained objective's)
    ce_dense_heldout, _, _ = task_loss_and_outputs(model, heldout_parts(p.heldout)[1], p.task, batch_size=eval_bs)
    rows = [_row("dense", ev, valid_keys, ce_heldout=ce_dense_all, steps=dense_steps)]

    def save(name: str, row: dict[str, Any]) -> None:
        if save_dir is not None:
            from econ_ray.modeling import save_model

            folder = Path(save_dir) / name
            save_model(folder, model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=row)
            row["model_dir"] = str(folder)

    save("dense", rows[0])

    # 2. post-training per eps
    requires = {n: q.requires_grad for n, q in model.named_parameters()}
    if freeze_weights:
        for n, q in model.named_parameters():
            q.requires_grad_(n.endswith("econ_gate_bias"))
    gated = []
    trajectories: dict[str, dict[str, Any]] = {}
    try:
        for eps in eps_values:
            model.load_state_dict(dense_state)
            c = _variant(
                cfg,
                **{
                    "attention.mode": "gates",
                    "objective.kind": "constrained",
                    "objective.tau": None,
                    "objective.tau_rel": float(eps),
                    "objective.dense_reference": "model",
                    "training.max_steps": post_steps,
                },
            )
            seed_everything(cfg.training.seed)
            steps_seen: list[dict[str, Any]] = []
            res = train_run(
                c,
                prepared=dataclasses.replace(p, cfg=c),
                hooks=RunHooks(on_step=_recorder(steps_seen)),
            )
            trajectories[f"{eps:g}"] = {"steps": steps_seen, "evaluations": res.history}
            ev = evaluate(model, rt, p.validation, p.task, batch_size=eval_bs, seq_len=L, distribution=False)
            s = res.summary
            row = _row(
                "gates",
                ev,
                valid_keys,
                eps=float(eps),
                tau=s["tau"],
                tau_aim=s["tau_aim"],
                tau_validation=s["tau_validation"],
                ce_heldout=s["ce_heldout"],
                feasible=s["feasible"],
                snapshot_step=s["snapshot_step"],
                ce_certified=s["ce_certified"],
                constrain=s["constrain"],
                kl_teacher=s.get("kl_teacher"),
                kl_certified=s["kl_certified"],
                infeasible_reason=s["infeasible_reason"],
                multiplier=s["multiplier"],
                steps=s["steps"],
            )
            row["edges_per_query"] = sum(st.kept for st in rt.stats.values()) / sum(st.rows for st in rt.stats.values())
            save(f"gates_eps{eps:g}", row)
            gated.append(row)
    finally:
        for n, q in model.named_parameters():
            q.requires_grad_(requires[n])
    rows += gated

    # 3. the dense model continued for the same steps (nothing to continue when weights are frozen)
    if continued and not freeze_weights:
        model.load_state_dict(dense_state)
        seed_everything(cfg.training.seed)
        res = train_run(_dense_cfg(cfg, post_steps), prepared=p)
        ev = evaluate(model, rt, p.validation, p.task, batch_size=eval_bs, seq_len=L, distribution=False)
        rows.append(_row("dense_continued", ev, valid_keys, ce_heldout=res.summary["ce_heldout"], steps=post_steps))
        rt.set_mode("dense")
        save("dense_continued", rows[-1])

    # 4. top-k and budget on the dense model, matched to each gated point
    model.load_state_dict(dense_state)
    rt.set_mode("dense")
    mask = p.validation.attention_mask
    ks = {k for k in (2**i for i in range(L.bit_length())) if k <= L} | set(extra_ks or [])
    brackets = {}
    for row in gated:
        lo, hi = bracket_ks(mask, row["edges_per_query"], L, causal=causal)
        brackets[row["eps"]] = (lo, hi)
        ks |= {k for k in (lo, hi) if k is not None}
    budgets = sorted({max(row["edges_per_query"], 1.0) for row in gated})
    swept = sweep(model, rt, p.validation, p.task, seq_len=L, ks=sorted(ks), budgets=budgets, batch_size=eval_bs)
    by_k = {r["k"]: r for r in swept if r["mode"] == "topk"}
    by_b = {r["budget"]: r for r in swept if r["mode"] == "budget"}

    def ev_of(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "ce": r["ce"],
            "metric": r["metric"],
            "metric_name": p.task.metric_name,
            "attention_density": r["attention_density"],
            "effective_gflops": r["effective_gflops"],
        }

    curve = [
        _row(
            "topk",
            ev_of(by_k[k]),
            valid_keys,
            k=k,
            edges_per_query_expected=topk_edges_per_query(mask, k, causal=causal),
        )
        for k in sorted(by_k)
    ]
    for row in gated:
        lo, hi = brackets[row["eps"]]
        for tag, k in (("k_lo", lo), ("k_hi", hi)):
            if k is not None:
                match = next(r for r in curve if r["k"] == k)
                rows.append({**match, "matched_eps": row["eps"], "match": tag})
        b = max(row["edges_per_query"], 1.0)
        rows.append(_row("budget", ev_of(by_b[b]), valid_keys, budget=b, matched_eps=row["eps"], match="budget"))
        row["topk_ce_at_match"] = _interpolate(curve, row["edges_per_query"], lo, hi)
    return {
        "rows": rows,
        "topk_curve": curve,
        "seq_len": L,
        "mean_valid_keys_per_query": valid_keys,
        "ce_dense": rows[0]["ce"],
        "ce_dense_heldout": ce_dense_heldout,
        "dense_steps": dense_steps,
        "posttrain_steps": post_steps,
        "freeze_weights": freeze_weights,
        "task": p.task.name,
        "metric_name": p.task.metric_name,
        "causal": causal,
        "trajectories": trajectories,
        "model": cfg.model.name if model_dir is None else str(model_dir),
    }


def _interpolate(curve: list[dict[str, Any]], edges: float, lo: int | None, hi: int | None) -> float | None:
    """Top-k CE at ``edges`` per query, linear in edges per query between k_lo and k_hi; None outside."""
    if lo is None or hi is None:
        return None
    a = next(r for r in curve if r["k"] == lo)
    b = next(r for r in curve if r["k"] == hi)
    xa, xb = a["edges_per_query_expected"], b["edges_per_query_expected"]
    if xb - xa < 1e-12:
        return a["ce"]
    t = (edges - xa) / (xb - xa)
    return a["ce"] + t * (b["ce"] - a["ce"])


# ---- output ----------------------------------------------------------------------------------------


def write_posttrain(out_dir: str | Path, result: dict[str, Any]) -> dict[str, Path]:
    """``posttrain.json`` (the whole result) and ``posttrain.png`` (CE against kept fraction)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "posttrain.json").write_text(json.dumps(result, indent=2, default=str))
    rows = result["rows"]
    fig = Figure(figsize=(6.8, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curve = sorted(result["topk_curve"], key=lambda r: r["kept_fraction"])
    ax.plot(
        [r["kept_fraction"] for r in curve],
        [r["ce"] for r in curve],
        "o-",
        color="tab:blue",
        label="top-k on the dense model",
    )
    for r in curve:
        ax.annotate(f"k={r['k']}", (r["kept_fraction"], r["ce"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    budget = [r for r in rows if r["method"] == "budget"]
    if budget:
        ax.plot(
            [r["kept_fraction"] for r in budget],
            [r["ce"] for r in budget],
            "^",
            color="tab:purple",
            label="threshold budget (same edges/query)",
        )
    gates = sorted((r for r in rows if r["method"] == "gates"), key=lambda r: r["kept_fraction"])
    ax.plot(
        [r["kept_fraction"] for r in gates],
        [r["ce"] for r in gates],
        "s-",
        color="tab:orange",
        label="gates post-trained, CE <= (1+eps) CE_dense",
    )
    for r in gates:
        ax.annotate(
            f"eps={r['eps']:g}", (r["kept_fraction"], r["ce"]), fontsize=7, xytext=(3, -10), textcoords="offset points"
        )
    ax.axhline(result["ce_dense"], color="grey", ls="--", label="dense")
    cont = next((r for r in rows if r["method"] == "dense_continued"), None)
    if cont:
        ax.axhline(cont["ce"], color="grey", ls=":", label=f"dense continued {cont['steps']} steps")
    ax.set_xscale("log")
    causal = result.get("causal", True)
    ax.set_xlabel(f"fraction of {'causal ' if causal else ''}attention edges kept (L = {result['seq_len']})")
    ax.set_ylabel("validation cross-entropy (nats / token)" if causal else "validation cross-entropy of the head")
    ax.set_title(f"sparse-attention post-training: {result['task']}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "posttrain.png", dpi=150)
    paths = {"json": out / "posttrain.json", "plot": out / "posttrain.png"}
    if result.get("trajectories"):
        paths["trajectories"] = plot_trajectories(result, out / "posttrain_trajectories.png")
    return paths


def plot_trajectories(result: dict[str, Any], path: Path) -> Path:
    """One column per eps: the multiplier; the drive rows' CE (each update's batch) against its ceiling,
    and the certification rows' CE at each evaluation against tau; the expected open fraction of the
    training batches and the certification rows' kept fraction at each evaluation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    trajs = result["trajectories"]
    gates = {f"{r['eps']:g}": r for r in result["rows"] if r["method"] == "gates"}
    fig = Figure(figsize=(4.2 * len(trajs), 7.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, len(trajs), squeeze=False, sharex="col")
    for col, (eps, t) in enumerate(trajs.items()):
        steps = [s for s in t["steps"] if s.get("multiplier") is not None]
        evals = [e for e in t["evaluations"] if e.get("certify_ce") is not None]
        row = gates.get(eps, {})
        ax = axes[0][col]
        ax.plot([s["step"] for s in steps], [s["multiplier"] for s in steps], color="tab:red", lw=1)
        ax.set_title(f"eps = {eps}", fontsize=10)
        ax.set_ylabel("multiplier mu")
        ax = axes[1][col]
        # the constrained quantity: CE, or the KL to the teacher (constrain 'kl')
        q = "kl" if row.get("constrain") == "kl" else "ce"
        name = "KL to teacher" if q == "kl" else "CE"
        drive = [s for s in steps if s.get(f"constraint_{q}") is not None]
        ax.plot(
            [s["step"] for s in drive],
            [s[f"constraint_{q}"] for s in drive],
            ".",
            ms=2,
            color="tab:gray",
            label=f"drive batch {name}",
        )
        if any(s.get("constraint_tau") is not None for s in drive):
            ax.plot(
                [s["step"] for s in drive],
                [s["constraint_tau"] for s in drive],
                ".",
                ms=2,
                color="tab:orange",
                label="its paired ceiling",
            )
        elif row.get("tau_aim") is not None:
            ax.axhline(row["tau_aim"], color="tab:orange", lw=1, label="aimed ceiling")
        ax.plot(
            [e["step"] for e in evals],
            [e.get(f"certify_{q}") for e in evals],
            "o-",
            color="tab:blue",
            label=f"certification {name}",
        )
        if row.get("tau") is not None:
            ax.axhline(row["tau"], color="tab:blue", ls="--", lw=1, label="tau")
        ax.set_ylabel("KL(teacher || student), nats" if q == "kl" else "cross-entropy")
        ax.legend(fontsize=6)
        ax = axes[2][col]
        cost = [s for s in steps if s.get("cost") is not None]
        ax.plot(
            [s["step"] for s in cost],
            [s["cost"] for s in cost],
            color="tab:green",
            lw=1,
            label="expected open (training)",
        )
        ax.plot(
            [e["step"] for e in evals],
            [e["certify_density"] for e in evals],
            "o-",
            color="tab:purple",
            label="kept (certification)",
        )
        ax.set_ylabel("fraction of edges")
        ax.set_xlabel("post-training step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
