"""Hugging Face model classes whose layers have their own head count and FFN width.

This file is the remote code of an exported pruned model: ``save_pretrained`` copies it next to the
weights and ``AutoModel*.from_pretrained(folder, trust_remote_code=True)`` imports it from there, so it
imports nothing but torch and transformers. Transformers 5 has no ``prune_heads`` any more, and
``BertConfig``/``GPT2Config`` hold one head count and one FFN width for all layers; these configs add
``heads_per_layer`` and ``intermediate_per_layer``. ``num_attention_heads``/``n_head`` keep the
*original* count because they fix the head width (``hidden / heads``); the stock forward passes
infer the number of heads from the projection widths, so only the modules' sizes change. A layer
with 0 heads has lost its whole attention sublayer: its self-attention is :class:`EmptySelfAttention`
(BERT: the output projection adds only its bias before the residual LayerNorm) or
:class:`EmptyGPT2Attention` (the projection's bias is added to the residual), which is exactly what the
masked model computes; a layer with 0 FFN neurons keeps 0-wide projections (only W2's bias remains).

A model whose attention keeps only some edges of its live heads (econ-ray's gates, or top-k) carries
that attention here too: the config's ``econ_attention`` (``mode`` gates or topk, ``k``,
``keep_strongest``) and, for gates, each attention module's ``econ_gate_bias`` (one per kept head) in
the weights. ``econ_attention_forward`` is the evaluation-time math of econ-ray's attention, registered
with transformers' attention interface under ``econ_export``: edge (i, j) of head h is kept when
``q_i . k_j / sqrt(d) + b_h > 0`` (gates; with ``keep_strongest`` each query's highest-scoring edge
too), or when its logit is among the query's k largest (top-k, renormalised over the kept edges). So
``from_pretrained`` gives the model that was evaluated, not stock attention over every edge.
``PrunedBertModel`` / ``PrunedGPT2Model`` are the base models for ``AutoModel``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AttentionInterface,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
)
from transformers.masking_utils import AttentionMaskInterface, eager_mask
from transformers.models.gpt2.modeling_gpt2 import GPT2Block
from transformers.pytorch_utils import Conv1D

EXPORT_ATTN = "econ_export"
ATTENTION_MODES = ("gates", "topk")


def econ_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Gated or top-k attention at evaluation: (B, H, L, dh) in, ((B, L, H, dh), weights) out."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, Lq, Lk)
    masked = scores + attention_mask if attention_mask is not None else scores
    if module.econ_mode == "gates":
        gate = (scores + module.econ_gate_bias.view(1, -1, 1, 1) > 0).to(scores.dtype)
        if module.econ_keep_strongest:
            strongest = torch.zeros_like(masked, dtype=torch.bool).scatter_(-1, masked.argmax(-1, keepdim=True), True)
            gate = torch.where(strongest, torch.ones_like(gate), gate)
        weights = torch.softmax(masked, dim=-1) * gate  # dropped mass is not renormalised
    else:  # topk: the k largest valid logits of each query, renormalised over them
        if attention_mask is not None:
            valid = attention_mask > torch.finfo(attention_mask.dtype).min / 2
        else:
            valid = torch.ones_like(masked, dtype=torch.bool)
        kth = masked.topk(min(int(module.econ_k), masked.shape[-1]), dim=-1).values[..., -1:]
        keep = (masked >= kth) & valid
        weights = torch.softmax(masked.masked_fill(~keep, torch.finfo(masked.dtype).min), dim=-1) * keep
    out = torch.matmul(weights.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), weights


AttentionInterface.register(EXPORT_ATTN, econ_attention_forward)
AttentionMaskInterface.register(EXPORT_ATTN, eager_mask)


def _econ_attention(config) -> dict | None:
    spec = getattr(config, "econ_attention", None)
    if spec is None:
        return None
    if spec.get("mode") not in ATTENTION_MODES:
        raise ValueError(f"econ_attention.mode must be one of {ATTENTION_MODES}, got {spec.get('mode')!r}")
    return spec


class EconAttentionModel:
    """Mixin of the four model classes: attention through transformers' attention interface (the stock
    BERT and GPT-2 modules use it, which transformers' source heuristic cannot see from this file), and
    ``econ_export`` whenever the config carries ``econ_attention``, whatever implementation
    ``from_pretrained`` would pick (sdpa would compute every edge)."""

    _can_set_attn_implementation_cached_value = True

    def _check_and_adjust_attn_implementation(self, attn_implementation, is_init_check=False, allow_all_kernels=False):
        if _econ_attention(self.config) is not None:
            return EXPORT_ATTN
        return super()._check_and_adjust_attn_implementation(
            attn_implementation, is_init_check=is_init_check, allow_all_kernels=allow_all_kernels
        )


def _install_attention(model, modules, heads) -> None:
    """Give each live attention module the exported attention (and, for gates, one bias per kept head)."""
    spec = _econ_attention(model.config)
    if spec is None:
        return
    for att, h in zip(modules, heads):
        if h == 0:
            continue
        att.econ_mode = spec["mode"]
        att.econ_k = spec.get("k")
        att.econ_keep_strongest = bool(spec.get("keep_strongest", False))
        if spec["mode"] == "gates":
            att.econ_gate_bias = nn.Parameter(torch.zeros(h))


def _per_layer(values, default: int, n_layers: int) -> list[int]:
    out = [int(v) for v in values] if values is not None else [int(default)] * n_layers
    if len(out) != n_layers or min(out, default=0) < 0:
        raise ValueError(f"expected {n_layers} per-layer sizes >= 0, got {out}")
    return out


class EmptySelfAttention(nn.Module):
    """A BERT self-attention with no head left: a context of width 0 (the output projection, 0 inputs
    wide, then adds only its bias)."""

    econ_empty_attention = True

    def __init__(self, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.is_cross_attention = False

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


class ZeroInputConv1D(Conv1D):
    """GPT-2's Conv1D for 0 inputs (its forward cannot reshape an empty tensor): the output is the bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.nf) + self.bias


class EmptyGPT2Attention(nn.Module):
    """A GPT-2 attention with no head left: the output projection's bias, added to the residual."""

    econ_empty_attention = True

    def __init__(self, hidden: int, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.is_cross_attention = False
        self.c_proj = ZeroInputConv1D(hidden, 0)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return self.c_proj(hidden_states.new_zeros(*hidden_states.shape[:-1], 0)), None


class PrunedBertConfig(BertConfig):
    model_type = "econ_pruned_bert"

    def __init__(self, heads_per_layer=None, intermediate_per_layer=None, econ_attention=None, **kwargs):
        super().__init__(**kwargs)
        self.econ_attention = econ_attention
        self.heads_per_layer = _per_layer(heads_per_layer, self.num_attention_heads, self.num_hidden_layers)
        self.intermediate_per_layer = _per_layer(intermediate_per_layer, self.intermediate_size, self.num_hidden_layers)


def _prune_bert(model, bert: BertModel, config: PrunedBertConfig) -> None:
    d = config.hidden_size
    hd = d // config.num_attention_heads
    layers = zip(bert.encoder.layer, config.heads_per_layer, config.intermediate_per_layer)
    for i, (layer, h, inner) in enumerate(layers):
        if h == 0:
            layer.attention.self = EmptySelfAttention(i)
        else:
            att = layer.attention.self
            att.num_attention_heads, att.all_head_size = h, h * hd
            att.query, att.key, att.value = nn.Linear(d, h * hd), nn.Linear(d, h * hd), nn.Linear(d, h * hd)
        layer.attention.output.dense = nn.Linear(h * hd, d)
        layer.intermediate.dense = nn.Linear(d, inner)
        layer.output.dense = nn.Linear(inner, d)
    _install_attention(model, [layer.attention.self for layer in bert.encoder.layer], config.heads_per_layer)


class PrunedBertModel(EconAttentionModel, BertModel):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        _prune_bert(self, self, config)


class PrunedBertForSequenceClassification(EconAttentionModel, BertForSequenceClassification):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig):
        super().__init__(config)
        _prune_bert(self, self.bert, config)


class PrunedGPT2Config(GPT2Config):
    model_type = "econ_pruned_gpt2"

    def __init__(self, heads_per_layer=None, intermediate_per_layer=None, econ_attention=None, **kwargs):
        super().__init__(**kwargs)
        self.econ_attention = econ_attention
        inner = self.n_inner if self.n_inner is not None else 4 * self.n_embd
        self.heads_per_layer = _per_layer(heads_per_layer, self.n_head, self.n_layer)
        self.intermediate_per_layer = _per_layer(intermediate_per_layer, inner, self.n_layer)


def _prune_gpt2(model, transformer: GPT2Model, config: PrunedGPT2Config) -> None:
    d = config.n_embd
    hd = d // config.n_head
    blocks = zip(transformer.h, config.heads_per_layer, config.intermediate_per_layer)
    for i, (block, h, inner) in enumerate(blocks):
        assert isinstance(block, GPT2Block)
        if h == 0:
            block.attn = EmptyGPT2Attention(d, i)
        else:
            att = block.attn
            att.num_heads, att.split_size = h, h * hd  # c_attn output splits into q, k, v of h * hd each
            att.c_attn, att.c_proj = Conv1D(3 * h * hd, d), Conv1D(d, h * hd)
        block.mlp.c_fc, block.mlp.c_proj = Conv1D(inner, d), (Conv1D if inner else ZeroInputConv1D)(d, inner)
    _install_attention(model, [block.attn for block in transformer.h], config.heads_per_layer)


class PrunedGPT2Model(EconAttentionModel, GPT2Model):
    config_class = PrunedGPT2Config

    def __init__(self, config: PrunedGPT2Config):
        super().__init__(config)
        _prune_gpt2(self, self, config)


class PrunedGPT2LMHeadModel(EconAttentionModel, GPT2LMHeadModel):
    config_class = PrunedGPT2Config

    def __init__(self, config: PrunedGPT2Config):
        super().__init__(config)
        _prune_gpt2(self, self.transformer, config)
