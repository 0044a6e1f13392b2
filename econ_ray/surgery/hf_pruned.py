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
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block
from transformers.pytorch_utils import Conv1D


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

    def __init__(self, heads_per_layer=None, intermediate_per_layer=None, **kwargs):
        super().__init__(**kwargs)
        self.heads_per_layer = _per_layer(heads_per_layer, self.num_attention_heads, self.num_hidden_layers)
        self.intermediate_per_layer = _per_layer(intermediate_per_layer, self.intermediate_size, self.num_hidden_layers)


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    config_class = PrunedBertConfig

    def __init__(self, config: PrunedBertConfig):
        super().__init__(config)
        d = config.hidden_size
        hd = d // config.num_attention_heads
        layers = zip(self.bert.encoder.layer, config.heads_per_layer, config.intermediate_per_layer)
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


class PrunedGPT2Config(GPT2Config):
    model_type = "econ_pruned_gpt2"

    def __init__(self, heads_per_layer=None, intermediate_per_layer=None, **kwargs):
        super().__init__(**kwargs)
        inner = self.n_inner if self.n_inner is not None else 4 * self.n_embd
        self.heads_per_layer = _per_layer(heads_per_layer, self.n_head, self.n_layer)
        self.intermediate_per_layer = _per_layer(intermediate_per_layer, inner, self.n_layer)


class PrunedGPT2LMHeadModel(GPT2LMHeadModel):
    config_class = PrunedGPT2Config

    def __init__(self, config: PrunedGPT2Config):
        super().__init__(config)
        d = config.n_embd
        hd = d // config.n_head
        blocks = zip(self.transformer.h, config.heads_per_layer, config.intermediate_per_layer)
        for i, (block, h, inner) in enumerate(blocks):
            assert isinstance(block, GPT2Block)
            if h == 0:
                block.attn = EmptyGPT2Attention(d, i)
            else:
                att = block.attn
                att.num_heads, att.split_size = h, h * hd  # c_attn output splits into q, k, v of h * hd each
                att.c_attn, att.c_proj = Conv1D(3 * h * hd, d), Conv1D(d, h * hd)
            block.mlp.c_fc, block.mlp.c_proj = Conv1D(inner, d), (Conv1D if inner else ZeroInputConv1D)(d, inner)
