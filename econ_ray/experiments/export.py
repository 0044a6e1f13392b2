"""Export a trained econ-ray model as a smaller plain Hugging Face model and measure what it realises:
evaluate the (masked) model, remove what it never used (``econ_ray.surgery.physical``), save and reload
the pruned model, check its outputs equal the masked model's, count both models' FLOPs and time both
at batch 1 (counted vs structural vs realised speedup)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from econ_ray.attention.runtime import runtime_of
from econ_ray.compute import count_flops
from econ_ray.compute.latency import paired_model_latency
from econ_ray.compute.shape import model_dims
from econ_ray.data import EncodedSplit, TaskSpec
from econ_ray.surgery.masks import blocks
from econ_ray.surgery.physical import (
    TOLERANCE,
    attention_spec,
    install_like,
    is_custom,
    load_pruned,
    plain_copy,
    plan_from_runtime,
    prune,
    pruned_flops,
    save_pruned,
    to_device,
)
from econ_ray.training.evaluate import evaluate, task_loss_and_outputs


def _params(model: nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.endswith("econ_gate_bias"))


# Run in a fresh interpreter: plain transformers only (the exported folder's own code, if any, is what
# trust_remote_code imports), the task class and AutoModel, on the inputs the parent saved.
_FRESH = r"""
import sys, torch
from transformers import AutoModel, {task_cls}
folder, inputs, out = sys.argv[1:4]
inp = torch.load(inputs)
task = {task_cls}.from_pretrained(folder, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
with torch.no_grad():
    logits = task(**inp).logits
    hidden = base(**inp).last_hidden_state
torch.save(dict(logits=logits, hidden=hidden, task_class=type(task).__name__, base_class=type(base).__name__), out)
"""


def plain_transformers_check(
    model: PreTrainedModel, folder: str | Path, split: EncodedSplit, task: TaskSpec, *, rows: int = 64
) -> dict[str, Any]:
    """Load the exported folder with plain ``transformers`` in a fresh process, through the task class
    (``AutoModelForSequenceClassification`` / ``AutoModelForCausalLM``) and ``AutoModel``, and compare
    their outputs on the first ``rows`` validation rows with the evaluated model's (its logits, and its
    base model's last hidden state), at real tokens."""
    import subprocess
    import sys
    import tempfile

    device = next(model.parameters()).device
    part = split.rows(slice(0, rows))
    inputs = {"input_ids": part.input_ids, "attention_mask": part.attention_mask}
    if part.token_type_ids is not None:
        inputs["token_type_ids"] = part.token_type_ids
    model.eval()
    with torch.no_grad():
        on_device = {k: v.to(device) for k, v in inputs.items()}
        ref_logits = model(**on_device).logits.cpu()
        base: nn.Module = getattr(model, "transformer" if task.kind == "lm" else "bert")
        ref_hidden = base(**on_device).last_hidden_state.cpu()
    task_cls = "AutoModelForCausalLM" if task.kind == "lm" else "AutoModelForSequenceClassification"
    with tempfile.TemporaryDirectory(prefix="econ-ray-export-check-") as tmp:
        torch.save(inputs, f"{tmp}/inputs.pt")
        proc = subprocess.run(
            [sys.executable, "-c", _FRESH.format(task_cls=task_cls), str(folder), f"{tmp}/inputs.pt", f"{tmp}/out.pt"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"plain_transformers_equal": False, "plain_transformers_error": last}
        got = torch.load(f"{tmp}/out.pt")
    real = inputs["attention_mask"].bool()
    task_diff = (got["logits"] - ref_logits).abs()
    task_diff = task_diff[real] if task.kind == "lm" else task_diff
    hidden_diff = (got["hidden"] - ref_hidden).abs()[real]
    return {
        "plain_transformers_task_class": got["task_class"],
        "plain_transformers_base_class": got["base_class"],
        "plain_transformers_abs_diff": float(task_diff.max()),
        "plain_transformers_hidden_abs_diff": float(hidden_diff.max()),
        "plain_transformers_rows": len(part),
    }


def _outputs(
    model: nn.Module, split: EncodedSplit, task: TaskSpec, batch_size: int
) -> tuple[float, torch.Tensor | None]:
    ce, logits, _ = task_loss_and_outputs(model, split, task, batch_size=batch_size)
    return ce, logits


def export(
    model: PreTrainedModel,
    tokenizer: Any,
    split: EncodedSplit,
    task: TaskSpec,
    *,
    seq_len: int,
    out: str | Path,
    batch_size: int = 64,
    warmup: int = 10,
    repeats: int = 50,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Evaluate the (masked) model, remove what it never used, save, reload, check equality, time both.

    ``model`` has econ-ray attention installed (masks in its runtime are honoured). Returns the report;
    ``equal`` is True when the reloaded pruned model, run in the source's attention mode, matches the
    source within ``tolerance`` (abs) on every logit (CE for lm) and on the metric;
    ``plain_transformers_equal`` when ``from_pretrained`` in a fresh process (the task class and
    ``AutoModel``, no econ-ray) reproduces the evaluated model's outputs within ``tolerance``. Gated
    and top-k attention is exported inside the model (``hf_pruned``); threshold-budget attention
    raises :class:`~econ_ray.surgery.physical.ExportRefused`.
    """
    rt = runtime_of(model)
    attention = attention_spec(model)  # raises ExportRefused where a plain forward cannot be the model
    ev = evaluate(model, rt, split, task, batch_size=batch_size, seq_len=seq_len, distribution=False)
    plan = plan_from_runtime(model, rt)
    model.eval()
    ce_src, logits_src = _outputs(model, split, task, batch_size)
    small = prune(model, plan, attention=attention)
    folder = save_pruned(small, tokenizer, out)
    plain_check = plain_transformers_check(model, folder, split, task)
    loaded = to_device(load_pruned(folder), next(model.parameters()).device)
    dense = plain_copy(model)

    ids = split.input_ids[:1].to(next(model.parameters()).device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}  # full length: the FLOPs' L
    # dense and pruned alternate round by round: the speedup is the median of the rounds' ratios
    paired = paired_model_latency(dense, loaded, inputs, warmup=warmup, repeats=repeats)
    lat_dense, lat_small = paired.a, paired.b
    with torch.no_grad():
        plain_diff = float((small(**inputs).logits - loaded(**inputs).logits).abs().max())
    for m in (dense, loaded):
        m.set_attn_implementation("eager")  # FlopCounterMode counts the attention products only in eager
    counted_dense, counted_small = count_flops(dense, ids), count_flops(loaded, ids)
    rt_small = install_like(loaded, model, plan)
    ev_small = evaluate(loaded, rt_small, split, task, batch_size=batch_size, seq_len=seq_len, distribution=False)
    ce_small, logits_small = _outputs(loaded, split, task, batch_size)
    if logits_src is None:
        out_diff = abs(ce_small - ce_src)
    else:
        assert logits_small is not None  # same task as the source, so logits too
        out_diff = float((logits_small - logits_src).abs().max())
    metric_diff = abs(ev_small["metric"] - ev["metric"])
    small_flops = pruned_flops(model, plan, task, seq_len)
    dims = model_dims(model.config)
    report = {
        "folder": str(folder),
        # stock: a config of the model's own class (plain from_pretrained); custom: per-layer sizes
        # (from_pretrained(..., trust_remote_code=True) runs the copied hf_pruned.py)
        "format": "custom" if is_custom(small) else "stock",
        "seq_len": seq_len,
        "metric_name": ev["metric_name"],
        "attention": rt.mode,
        "masked_metric": ev["metric"],
        "pruned_metric": ev_small["metric"],
        "metric_abs_diff": metric_diff,
        "output_abs_diff": out_diff,  # max |logit| difference, or |CE| difference for lm
        "reload_abs_diff": plain_diff,
        "tolerance": tolerance,
        "equal": bool(out_diff <= tolerance and metric_diff <= tolerance and plain_diff <= tolerance),
        # what a user gets: from_pretrained in a fresh process (task class and AutoModel) against the
        # evaluated model, at real tokens of the first validation rows
        "exported_attention": attention["mode"] if attention else "dense",
        **plain_check,
        "plain_transformers_equal": bool(
            plain_check.get("plain_transformers_abs_diff", float("inf")) <= tolerance
            and plain_check.get("plain_transformers_hidden_abs_diff", float("inf")) <= tolerance
        ),
        "heads_total": len(plan.heads) * dims.n_heads,
        "heads_kept": sum(len(h) for h in plan.heads),
        "neurons_total": sum(b.ffn_in_weight.numel() // dims.hidden for b in blocks(model)),
        "neurons_kept": sum(len(n) for n in plan.neurons),
        "heads_per_layer": [len(h) for h in plan.heads],
        "intermediate_per_layer": [len(n) for n in plan.neurons],
        "params_dense": _params(dense),
        "params_pruned": _params(loaded),
        "dense_total_gflops": ev["dense_total_gflops"],
        "effective_gflops": ev["effective_gflops"],
        "pruned_gflops": small_flops / 1e9,
        "counted_dense_gflops": counted_dense / 1e9,
        "counted_pruned_gflops": counted_small / 1e9,
        "latency_dense_ms": lat_dense.median_s * 1e3,
        "latency_pruned_ms": lat_small.median_s * 1e3,
        "latency_dense_p10_p90_ms": [lat_dense.p10_s * 1e3, lat_dense.p90_s * 1e3],
        "latency_pruned_p10_p90_ms": [lat_small.p10_s * 1e3, lat_small.p90_s * 1e3],
        "latency_repeats": repeats,
        "threads": torch.get_num_threads(),
        "device": str(next(model.parameters()).device),
        "theoretical_speedup": ev["dense_total_gflops"] / ev["effective_gflops"],
        "structural_speedup": ev["dense_total_gflops"] * 1e9 / small_flops,
        "realised_speedup": paired.ratio,  # median over rounds of dense time / pruned time
        "realised_speedup_p10_p90": [paired.ratio_p10, paired.ratio_p90],
    }
    (Path(folder) / "export.json").write_text(json.dumps(report, indent=2))
    return report
