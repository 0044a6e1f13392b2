"""Evaluation: task metrics, CE, allocation metrics and FLOPs of one model on one split."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from econ_ray.attention.runtime import EconRuntime
from econ_ray.compute import FlopCount, LayerSparsity, dense_flops, effective_flops, shape_from_hf_config, static_flops
from econ_ray.compute.shape import model_dims
from econ_ray.data import EncodedSplit, TaskSpec
from econ_ray.metrics.task import compute_task_metrics


@dataclass(frozen=True)
class Allocation:
    """Allocation statistics of one evaluation pass, averaged over layers, heads and examples."""

    attention_density: float
    ffn_density: float
    gini: float
    entropy_bits: float
    empty_row_fraction: float
    layers: list[LayerSparsity]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def task_loss_and_outputs(
    model: nn.Module, split: EncodedSplit, task: TaskSpec, *, batch_size: int, limit: int | None = None
) -> tuple[float, torch.Tensor | None, torch.Tensor | None]:
    """Mean task loss over the split (CE in nats per example, or per token for LM; MSE for regression)
    with the model's logits and labels for non-LM tasks."""
    device = next(model.parameters()).device
    n = len(split) if limit is None else min(limit, len(split))
    total, count = 0.0, 0
    logits_all, labels_all = [], []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        batch = _to(split.batch(idx), device)
        labels = batch.pop("labels")
        out = model(**batch)
        if task.kind == "lm":
            logits = out.logits[:, :-1].float()
            tgt = labels[:, 1:]
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(loss)
            count += int((tgt != -100).sum())
        elif task.kind == "regression":
            pred = out.logits.squeeze(-1).float()
            total += float(((pred - labels.float()) ** 2).sum())
            count += len(idx)
            logits_all.append(pred.cpu())
            labels_all.append(labels.cpu())
        else:
            total += float(nn.functional.cross_entropy(out.logits.float(), labels, reduction="sum"))
            count += len(idx)
            logits_all.append(out.logits.float().cpu())
            labels_all.append(labels.cpu())
    mean = total / max(count, 1)
    if task.kind == "lm":
        return mean, None, None
    return mean, torch.cat(logits_all), torch.cat(labels_all)


def summarise_allocation(rt: EconRuntime, n_heads: int, intermediate: int) -> Allocation:
    """Turn the runtime's per-layer sums into averages and per-layer sparsity for effective FLOPs."""
    layers = []
    kept = valid = rows = empty = nz = tot = 0
    g_sum = g_n = h_sum = h_n = 0.0
    for i in sorted(rt.stats):
        st = rt.stats[i]
        kept, valid, rows, empty = kept + st.kept, valid + st.valid, rows + st.rows, empty + st.empty_rows
        nz, tot = nz + st.ffn_nonzero, tot + st.ffn_total
        g_sum, g_n, h_sum, h_n = g_sum + st.gini_sum, g_n + st.gini_n, h_sum + st.entropy_sum, h_n + st.entropy_n
        dead_heads = int((~st.head_open).sum()) if st.head_open is not None else 0
        dead_neurons = int((~st.neuron_active).sum()) if st.neuron_active is not None else 0
        layers.append(
            LayerSparsity(
                attention_density=st.kept / st.valid if st.valid else 1.0,
                dead_heads=min(dead_heads, n_heads),
                ffn_density=st.ffn_nonzero / st.ffn_total if st.ffn_total else 1.0,
                dead_neurons=min(dead_neurons, intermediate),
            )
        )
    return Allocation(
        attention_density=kept / valid if valid else 1.0,
        ffn_density=nz / tot if tot else 1.0,
        gini=g_sum / g_n if g_n else float("nan"),
        entropy_bits=h_sum / h_n if h_n else float("nan"),
        empty_row_fraction=empty / rows if rows else 0.0,
        layers=layers,
    )


def flops_for(
    model: nn.Module, task: TaskSpec, seq_len: int, layers: list[LayerSparsity] | None
) -> tuple[FlopCount, FlopCount, FlopCount]:
    """(dense, effective, static) FLOPs at batch 1 and ``seq_len`` for this model's shape and measured
    sparsity. ``static`` is the model with its dead heads and never-active neurons removed, run with
    dense kernels (what physical pruning realises); ``effective`` also credits closed edges and zero
    activations, which need sparse kernels."""
    shape = shape_from_hf_config(
        model.config, n_labels=None if task.kind == "lm" else task.num_labels, lm_head=task.kind == "lm"
    )
    dense = dense_flops(shape, seq_len)
    if not layers or len(layers) != shape.n_layers:
        return dense, dense, dense
    static = static_flops(
        shape,
        seq_len,
        [shape.n_heads - x.dead_heads for x in layers],
        [shape.intermediate - x.dead_neurons for x in layers],
    )
    return dense, effective_flops(shape, seq_len, layers), static


def evaluate(
    model: nn.Module,
    rt: EconRuntime,
    split: EncodedSplit,
    task: TaskSpec,
    *,
    batch_size: int,
    seq_len: int,
    distribution: bool = True,
) -> dict[str, Any]:
    """Every metric of METHOD section 5 plus dense and effective GFLOPs, on ``split`` in eval mode.

    ``distribution=False`` skips Gini and entropy (NaN then), for the frequent evaluations in training.
    """
    was_training = model.training
    model.eval()
    rt.reset_stats()
    try:
        with rt.override(collect=True, collect_distribution=distribution):
            ce, logits, labels = task_loss_and_outputs(model, split, task, batch_size=batch_size)
    finally:
        model.train(was_training)
    metrics = compute_task_metrics(task.kind, logits=logits, labels=labels, mean_ce=ce)
    cfg = model.config
    dims = model_dims(cfg)
    heads, inter = dims.n_heads, dims.intermediate
    alloc = summarise_allocation(rt, heads, inter)
    dense, eff, static = flops_for(model, task, seq_len, alloc.layers)
    out: dict[str, Any] = {
        "metric_name": task.metric_name,
        "metric": float(metrics[task.metric_name]),
        **{k: float(v) for k, v in metrics.items()},
        "ce": float(ce),
        "attention_density": alloc.attention_density,
        "ffn_density": alloc.ffn_density,
        "gini": alloc.gini,
        "entropy_bits": alloc.entropy_bits,
        "empty_row_fraction": alloc.empty_row_fraction,
        "dead_heads": sum(x.dead_heads for x in alloc.layers),
        "dead_neurons": sum(x.dead_neurons for x in alloc.layers),
        "seq_len": seq_len,
        # dense_gflops: the weight ("dense") layers, the paper's and FlopCounterMode's count;
        # dense_total_gflops adds the attention products: the unmodified model's whole cost.
        # effective_gflops is the whole cost after skipping (METHOD section 6): compare it with
        # dense_total_gflops.
        "dense_gflops": dense.linear / 1e9,
        "attention_gflops": dense.attention / 1e9,
        "dense_total_gflops": dense.total / 1e9,
        "effective_gflops": eff.total / 1e9,
        "effective_attention_gflops": eff.attention / 1e9,
        # static_gflops: what removing the dead heads and never-active neurons leaves, at full speed
        # with dense kernels (no credit for closed edges or zero activations)
        "static_gflops": static.total / 1e9,
    }
    if not math.isfinite(out["metric"]):
        out["metric"] = float("nan")
    return out
