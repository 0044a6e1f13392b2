"""Physical pruning (issue 4 item 6): remove dead heads and never-active FFN neurons for real, save a
smaller Hugging Face model, check it computes what the masked model computed, and time both.

What goes (METHOD section 6): heads with no open edge on the evaluation set (all gates closed, or
masked by a baseline or a targeted cut) and FFN neurons never nonzero on it (W1 rows and W2 columns
both). A layer that loses every head loses its attention sublayer (``hf_pruned.EmptySelfAttention``:
only the output projection's bias remains); one that loses every neuron keeps 0-wide projections.

Where the structure fits a stock config (every head kept, one FFN width in every layer: :func:`fits_stock`)
the saved folder is a stock model of the source's class, loaded by plain ``from_pretrained(folder)``.
Otherwise it has per-layer sizes (``econ_ray.surgery.hf_pruned`` copied beside the weights as remote
code): ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``
(``AutoModelForCausalLM`` for GPT-2). A layer that keeps nothing at all still has its LayerNorms and
biases, so it is never dropped (that would change the outputs). Three speedups are reported:
theoretical = dense / effective FLOPs (everything skippable, edges and zero activations included),
structural = dense / FLOPs of the pruned model (what removing heads and neurons alone saves),
realised = batch-1 latency of the dense model / the pruned one, both plain models in this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from econ_ray.attention.runtime import EconRuntime, install, runtime_of
from econ_ray.compute import LayerSparsity, effective_flops, shape_from_hf_config
from econ_ray.compute.shape import model_dims
from econ_ray.data import TaskSpec
from econ_ray.surgery import hf_pruned
from econ_ray.surgery.masks import blocks

TOLERANCE = 1e-4  # abs, on logits (classification/regression), CE (lm) and the metric


@dataclass(frozen=True)
class Plan:
    """Kept unit indices per layer (an empty list: the whole sublayer goes)."""

    heads: list[list[int]]
    neurons: list[list[int]]


def plan_from_alive(head_alive: list[torch.Tensor], neuron_alive: list[torch.Tensor]) -> Plan:
    """Keep the alive units of each layer (bool tensors)."""
    heads = [torch.nonzero(h.cpu()).flatten().tolist() for h in head_alive]
    neurons = [torch.nonzero(n.cpu()).flatten().tolist() for n in neuron_alive]
    return Plan(heads, neurons)


def plan_from_runtime(model: nn.Module, rt: EconRuntime) -> Plan:
    """The plan the last ``evaluate`` observed: heads with an open edge, neurons ever nonzero."""
    nl = len(blocks(model))
    inter = [b.ffn_in_weight.shape[1 if b.conv1d else 0] for b in blocks(model)]
    head_alive, neuron_alive = [], []
    for i in range(nl):
        st = rt.stats.get(i)
        if st is None or st.head_open is None or st.neuron_active is None:
            raise ValueError("no evaluation statistics in the runtime: run evaluate() on the model first")
        head_alive.append(st.head_open)
        neuron_alive.append(
            st.neuron_active if st.neuron_active.numel() == inter[i] else torch.ones(inter[i], dtype=torch.bool)
        )
    return plan_from_alive(head_alive, neuron_alive)


class ExportRefused(ValueError):
    """The model cannot be exported as a model plain transformers runs the same way (one line: why)."""


def attention_spec(model: nn.Module) -> dict[str, Any] | None:
    """What the exported model's attention must do beyond stock attention: None for dense attention
    (every edge of a live head), else the ``econ_attention`` of ``hf_pruned`` (gates or top-k). Raises
    :class:`ExportRefused` for threshold-budget attention, whose per-example threshold needs which query
    tokens are real, which a stock forward does not pass to the attention function."""
    rt = runtime_of(model)
    if rt.mode == "dense":
        return None
    if rt.mode == "budget":
        raise ExportRefused(
            "threshold-budget attention cannot be exported as the evaluated model: its per-example threshold "
            "counts real query tokens, which a transformers forward does not pass to attention; export the "
            "model trained with gates or top-k instead"
        )
    return {"mode": rt.mode, "k": rt.k, "keep_strongest": bool(rt.keep_strongest)}


def _classes(model: nn.Module) -> tuple[type, type]:
    from transformers import BertForSequenceClassification, GPT2LMHeadModel

    if isinstance(model, BertForSequenceClassification):
        return hf_pruned.PrunedBertConfig, hf_pruned.PrunedBertForSequenceClassification
    if isinstance(model, GPT2LMHeadModel):
        return hf_pruned.PrunedGPT2Config, hf_pruned.PrunedGPT2LMHeadModel
    raise ValueError(
        f"physical pruning supports BertForSequenceClassification and GPT2LMHeadModel, not {type(model).__name__}"
    )


def _config_dict(model: PreTrainedModel) -> dict[str, Any]:
    d = model.config.to_dict()
    for key in (
        "model_type",
        "architectures",
        "auto_map",
        "transformers_version",
        "_attn_implementation",
        "heads_per_layer",
        "intermediate_per_layer",
    ):
        d.pop(key, None)
    return d


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights without econ-ray's gate biases (what a stock model of its class holds)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("econ_gate_bias")}


def to_device(model: PreTrainedModel, device: torch.device) -> PreTrainedModel:
    """``model.to(device)`` (in place), called through ``nn.Module``'s type: transformers wraps ``to`` with
    ``functools.wraps``, which hides its signature from the type checker. The method run is the same."""
    module: nn.Module = model
    module.to(device)
    return model


def plain_copy(model: PreTrainedModel, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """The same weights in a stock model of the same class (no econ-ray runtime), in eval mode."""
    cfg = type(model.config).from_dict(_config_dict(model))
    dense = type(model)(cfg)
    dense.load_state_dict(plain_state(model))
    dense.set_attn_implementation(attn_implementation)
    return to_device(dense, next(model.parameters()).device).eval()


def fits_stock(model: nn.Module, plan: Plan) -> bool:
    """Whether the pruned structure is a stock config of the model's class: every layer keeps all its
    heads and every layer keeps the same FFN width (then plain ``transformers`` loads it, no remote code)."""
    n_heads = model_dims(model.config).n_heads
    return all(len(h) == n_heads for h in plan.heads) and len({len(n) for n in plan.neurons}) == 1


def prune(
    model: PreTrainedModel, plan: Plan, attn_implementation: str = "sdpa", *, attention: dict[str, Any] | None = None
) -> PreTrainedModel:
    """A new, smaller model holding the kept heads and neurons of ``model`` (unchanged): of the model's
    own class with a stock config where the plan fits one (:func:`fits_stock`) and its attention is
    dense, else of ``hf_pruned``'s per-layer classes; ``attention`` (:func:`attention_spec`) puts
    the gated or top-k attention, with the kept heads' gate biases, into the exported model."""
    cfg_cls, model_cls = _classes(model)
    if attention is None and fits_stock(model, plan):
        stock = _config_dict(model)
        stock["n_inner" if "n_inner" in stock else "intermediate_size"] = len(plan.neurons[0])
        small = type(model)(type(model.config).from_dict(stock))
    else:
        cfg = cfg_cls(
            **_config_dict(model),
            heads_per_layer=[len(h) for h in plan.heads],
            intermediate_per_layer=[len(n) for n in plan.neurons],
            econ_attention=attention,
        )
        small = model_cls(cfg)
    names = {m: n for n, m in model.named_modules()}
    state = plain_state(model)
    if attention is not None and attention["mode"] == "gates":  # the kept heads' gate biases go along
        for i, b in enumerate(blocks(model)):
            if plan.heads[i]:
                keep = torch.tensor(plan.heads[i], dtype=torch.long, device=b.gate_bias.device)
                state[f"{names[b.attn]}.econ_gate_bias"] = b.gate_bias.detach()[keep].clone()
    dims = model_dims(model.config)
    hd, d = dims.head_dim, dims.hidden
    for i, b in enumerate(blocks(model)):
        cols = torch.tensor([h * hd + j for h in plan.heads[i] for j in range(hd)], dtype=torch.long)  # (h_i * hd,)
        nidx = torch.tensor(plan.neurons[i], dtype=torch.long)
        o, w1, w2 = names[b.attn_out], names[b.ffn_in], names[b.ffn_out]
        empty = not plan.heads[i]  # the attention sublayer goes (hf_pruned's empty attention)
        if b.conv1d:  # GPT-2 Conv1D: weight (in, out); c_attn packs q | k | v along out
            qkv = torch.cat([cols, cols + d, cols + 2 * d])
            a = names[b.attn.c_attn]
            state[f"{a}.weight"], state[f"{a}.bias"] = state[f"{a}.weight"][:, qkv], state[f"{a}.bias"][qkv]
            if empty:
                del state[f"{a}.weight"], state[f"{a}.bias"]
            state[f"{o}.weight"] = state[f"{o}.weight"][cols]
            state[f"{w1}.weight"], state[f"{w1}.bias"] = state[f"{w1}.weight"][:, nidx], state[f"{w1}.bias"][nidx]
            state[f"{w2}.weight"] = state[f"{w2}.weight"][nidx]
        else:  # nn.Linear: weight (out, in)
            for proj in ("query", "key", "value"):
                p = f"{names[b.attn]}.{proj}"
                state[f"{p}.weight"], state[f"{p}.bias"] = state[f"{p}.weight"][cols], state[f"{p}.bias"][cols]
                if empty:
                    del state[f"{p}.weight"], state[f"{p}.bias"]
            state[f"{o}.weight"] = state[f"{o}.weight"][:, cols]
            state[f"{w1}.weight"], state[f"{w1}.bias"] = state[f"{w1}.weight"][nidx], state[f"{w1}.bias"][nidx]
            state[f"{w2}.weight"] = state[f"{w2}.weight"][:, nidx]
    small.load_state_dict({k: v.contiguous() for k, v in state.items()})
    small.set_attn_implementation(hf_pruned.EXPORT_ATTN if attention is not None else attn_implementation)
    return to_device(small, next(model.parameters()).device).eval()


def is_custom(small: PreTrainedModel) -> bool:
    """Whether ``small`` needs ``hf_pruned``'s classes (remote code) rather than a stock config."""
    return isinstance(small, (hf_pruned.PrunedBertForSequenceClassification, hf_pruned.PrunedGPT2LMHeadModel))


def save_pruned(small: PreTrainedModel, tokenizer: Any, folder: str | Path) -> Path:
    """``save_pretrained``; a model of ``hf_pruned``'s classes gets them registered as remote code
    (copied beside the weights) for its task class and for ``AutoModel`` (the base model), a stock one
    is saved as it is."""
    import json

    folder = Path(folder)
    if is_custom(small):
        gpt2 = isinstance(small, hf_pruned.PrunedGPT2LMHeadModel)
        auto = "AutoModelForCausalLM" if gpt2 else "AutoModelForSequenceClassification"
        small.config.register_for_auto_class()
        small.register_for_auto_class(auto)
    small.save_pretrained(folder)
    if is_custom(small):
        conf_file = folder / "config.json"
        conf = json.loads(conf_file.read_text())
        base = "PrunedGPT2Model" if gpt2 else "PrunedBertModel"
        conf.setdefault("auto_map", {})["AutoModel"] = f"hf_pruned.{base}"
        conf_file.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def load_pruned(folder: str | Path) -> PreTrainedModel:
    """The exported model through plain transformers: a stock config loads as it is; a per-layer one with
    ``trust_remote_code`` (which runs the copied hf_pruned.py)."""
    import json

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    model_type = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    remote = str(model_type).startswith("econ_pruned_")
    loader = AutoModelForCausalLM if model_type in ("econ_pruned_gpt2", "gpt2") else AutoModelForSequenceClassification
    return loader.from_pretrained(folder, trust_remote_code=remote).eval()


def pruned_flops(model: PreTrainedModel, plan: Plan, task: TaskSpec, seq_len: int) -> float:
    """Dense FLOPs (batch 1, ``seq_len`` tokens) of the physically pruned model, by the project's formulas."""
    shape = shape_from_hf_config(
        model.config, n_labels=None if task.kind == "lm" else task.num_labels, lm_head=task.kind == "lm"
    )
    layers = [
        LayerSparsity(
            attention_density=len(h) / shape.n_heads,
            dead_heads=shape.n_heads - len(h),
            ffn_density=len(n) / shape.intermediate,
            dead_neurons=shape.intermediate - len(n),
        )
        for h, n in zip(plan.heads, plan.neurons)
    ]
    return effective_flops(shape, seq_len, layers).total


def install_like(small: nn.Module, source: nn.Module, plan: Plan) -> EconRuntime:
    """econ-ray attention on the pruned model in the source's mode, with the kept heads' gate biases."""
    src = runtime_of(source)
    rt = install(small, mode=src.mode, k=src.k, budget=src.budget, keep_strongest=src.keep_strongest)
    biases = [b.gate_bias.detach() for b in blocks(source)]
    for i, b in enumerate(blocks(small)):
        keep = torch.tensor(plan.heads[i], dtype=torch.long, device=biases[i].device)
        b.attn.econ_gate_bias = nn.Parameter(biases[i][keep].clone())
    return rt


def pruned_latency(
    model: PreTrainedModel, rt: EconRuntime, *, seq_len: int, threads: int, repeats: int, warmup: int = 5
) -> dict[str, Any]:
    """Batch-1 latency of the model with what the last ``evaluate`` saw unused removed for real
    (:func:`plan_from_runtime`, :func:`prune`), at ``seq_len`` tokens with ``threads`` CPU threads:
    ``latency_ms`` (median of ``repeats`` after ``warmup``), its p10/p90 and the thread count."""
    from econ_ray.compute.latency import model_latency

    small = prune(model, plan_from_runtime(model, rt))
    device = next(model.parameters()).device
    ids = torch.ones(1, seq_len, dtype=torch.long, device=device)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        lat = model_latency(
            small, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, warmup=warmup, repeats=repeats
        )
    finally:
        torch.set_num_threads(saved)
    return {
        "latency_ms": lat.median_s * 1e3,
        "latency_p10_ms": lat.p10_s * 1e3,
        "latency_p90_ms": lat.p90_s * 1e3,
        "latency_threads": threads,
    }
