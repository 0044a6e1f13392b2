"""Analytic FLOPs of BERT-family encoders and GPT-2-family causal LMs, dense and sparsity-aware.

Counting convention (a project decision; every number the project reports uses it):

* One FLOP is one floating-point add or multiply, so a multiply-add counts as **2 FLOPs** and a
  ``(m, k) @ (k, n)`` matmul costs ``2 * m * k * n`` FLOPs.
* Counts are for **batch 1** and a sequence of ``L`` tokens, one forward pass.
* ``linear`` = the weight ("dense") layers. Per layer: the Q, K, V and O projections,
  ``4 * 2*L*d*d``, the FFN up projection ``2*L*d*I`` and down projection ``2*L*I*d``. Plus the
  head: the BERT pooler ``2*d*d`` and classifier ``2*d*n_labels`` act on the CLS token only;
  the GPT-2 LM head ``2*L*d*V`` and sequence-classification score ``2*L*d*n_labels`` act on every
  position (that is what the Hugging Face modules compute, even though only the last position is
  read for classification).
* ``attention`` = the two attention matmuls, ``Q K^T`` and ``A V``: ``2 * (2*L*L*d)`` per layer
  (``H`` heads of ``d_head`` each, ``H * d_head = d``; each product is ``2*L*L*d_head`` per head).
  Causal models are charged the full ``L x L`` square as well, because the dense kernels compute
  it and mask afterwards.
* Sparse attention (gates, top-k, budget; :func:`effective_flops`) saves **only the A V product**
  of the edges it drops: deciding which edges to keep needs every score of ``Q K^T``, so a live
  head (one with any kept edge on the evaluation set) pays its whole ``Q K^T``. Only a dead head
  (all its edges closed on the evaluation set) saves both products, and its Q, K, V, O slices.
  Per layer: ``2*L*L*d * (H - dead_heads)/H`` (``Q K^T``) ``+ 2*L*L*d * attention_density``
  (``A V``), the density measured over all heads, dead ones included (METHOD section 6).
* ``total = linear + attention``.
* Not counted: embedding lookups, layer norms, softmax, activations, biases, residual adds. They
  are O(L*d) and ``torch.utils.flop_counter.FlopCounterMode`` does not count them either, so the
  formulas can be checked against it exactly: ``linear`` equals FlopCounterMode on a model with
  ``attn_implementation="sdpa"`` on CPU (the fused kernel is not counted there) and ``total``
  equals it with ``attn_implementation="eager"`` (the two ``bmm``/``matmul`` calls are counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from econ_ray.compute.shape import ModelDims, model_dims

GIGA = 1e9


@dataclass(frozen=True)
class ArchShape:
    """The shape parameters of a transformer that determine its FLOPs.

    ``causal`` is True for the GPT-2 family and False for the BERT family. ``pooler`` adds the BERT
    pooler (one ``d x d`` layer on the CLS token); ``n_labels`` adds a classification head
    (``None`` = no head); ``lm_head`` adds the ``d x V`` language-model head on every position.
    """

    n_layers: int
    hidden: int
    n_heads: int
    intermediate: int
    vocab_size: int
    causal: bool
    pooler: bool
    n_labels: int | None
    lm_head: bool

    def __post_init__(self) -> None:
        for name in ("n_layers", "hidden", "n_heads", "intermediate", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ArchShape.{name} must be positive, got {getattr(self, name)}")
        if self.hidden % self.n_heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by n_heads ({self.n_heads})")
        if self.n_labels is not None and self.n_labels <= 0:
            raise ValueError(f"n_labels must be positive or None, got {self.n_labels}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden // n_heads``."""
        return self.hidden // self.n_heads


ARCHS: dict[str, ArchShape] = {
    # BertModel (bert-base-uncased shape): pooler, no classifier, no LM head.
    "bert-base": ArchShape(
        n_layers=12,
        hidden=768,
        n_heads=12,
        intermediate=3072,
        vocab_size=30522,
        causal=False,
        pooler=True,
        n_labels=None,
        lm_head=False,
    ),
    # GPT2LMHeadModel (124M): tied LM head over the 50257-token vocabulary.
    "gpt2": ArchShape(
        n_layers=12,
        hidden=768,
        n_heads=12,
        intermediate=3072,
        vocab_size=50257,
        causal=True,
        pooler=False,
        n_labels=None,
        lm_head=True,
    ),
}


def shape_from_hf_config(
    config: Any,
    *,
    n_labels: int | None = None,
    lm_head: bool | None = None,
    pooler: bool | None = None,
) -> ArchShape:
    """Build an :class:`ArchShape` from a BertConfig/GPT2Config-like object.

    Reads ``num_hidden_layers``/``n_layer``, ``hidden_size``/``n_embd``,
    ``num_attention_heads``/``n_head``, ``intermediate_size``/``n_inner`` (``None`` means
    ``4 * hidden``, the GPT-2 default) and ``vocab_size``. The model is causal when
    ``config.model_type == "gpt2"`` or ``config.is_decoder`` is true.

    Defaults for the heads follow the usual model classes: ``lm_head`` defaults to ``causal``
    (GPT2LMHeadModel), ``pooler`` to ``not causal`` (BertModel/BertForSequenceClassification);
    ``n_labels`` must be given explicitly because configs always carry a ``num_labels``. The sizes
    come from :func:`econ_ray.compute.shape.model_dims`.
    """
    vocab_size = getattr(config, "vocab_size", None)
    try:
        dims: ModelDims | None = model_dims(config)
    except ValueError:
        dims = None
    if dims is None or vocab_size is None:
        raise ValueError(f"config lacks layer/hidden/head/vocab sizes: {type(config).__name__}")
    causal = getattr(config, "model_type", None) == "gpt2" or bool(getattr(config, "is_decoder", False))
    return ArchShape(
        n_layers=dims.n_layers,
        hidden=dims.hidden,
        n_heads=dims.n_heads,
        intermediate=dims.intermediate,
        vocab_size=int(vocab_size),
        causal=causal,
        pooler=(not causal) if pooler is None else pooler,
        n_labels=n_labels,
        lm_head=causal if lm_head is None else lm_head,
    )


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass (batch 1), split into weight layers and attention matmuls."""

    linear: float
    attention: float

    @property
    def total(self) -> float:
        """``linear + attention``, in FLOPs."""
        return self.linear + self.attention

    @property
    def linear_g(self) -> float:
        """``linear`` in GFLOPs (1e9 FLOPs)."""
        return self.linear / GIGA

    @property
    def attention_g(self) -> float:
        """``attention`` in GFLOPs (1e9 FLOPs)."""
        return self.attention / GIGA

    @property
    def total_g(self) -> float:
        """``total`` in GFLOPs (1e9 FLOPs)."""
        return self.total / GIGA


def _check_seq_len(seq_len: int) -> None:
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")


def _head_flops(shape: ArchShape, seq_len: int) -> float:
    """FLOPs of everything after the last layer (pooler, classifier, LM head)."""
    d, L = shape.hidden, seq_len
    flops = 0.0
    if shape.pooler:
        flops += 2 * d * d
    if shape.n_labels is not None:
        # BERT classifies the pooled CLS vector; HF GPT-2 scores every position, then picks one.
        positions = L if shape.causal else 1
        flops += 2 * positions * d * shape.n_labels
    if shape.lm_head:
        flops += 2 * L * d * shape.vocab_size
    return float(flops)


def _layer_flops(
    shape: ArchShape,
    seq_len: int,
    *,
    alive_heads: int,
    attention_density: float,
    alive_neurons: int,
    ffn_density: float,
) -> tuple[float, float]:
    """(linear, attention) FLOPs of one layer given what its sparsity pattern lets us skip.

    ``attention`` = the whole ``Q K^T`` of the ``alive_heads`` live heads (a mask is chosen from
    all of a live head's scores, so none of them is skipped) plus the ``A V`` product scaled by
    ``attention_density`` (kept edges / valid edges over all heads, dead ones included).
    """
    d, L, inner = shape.hidden, seq_len, shape.intermediate
    head_frac = alive_heads / shape.n_heads
    qkvo = 4 * 2 * L * d * d * head_frac
    ffn_up = 2 * L * d * alive_neurons
    ffn_down = 2 * L * inner * d * ffn_density
    scores = 2 * L * L * d * head_frac  # Q K^T of the live heads, in full
    weighted_values = 2 * L * L * d * attention_density  # A V of the kept edges only
    return float(qkvo + ffn_up + ffn_down), float(scores + weighted_values)


def dense_flops(shape: ArchShape, seq_len: int) -> FlopCount:
    """FLOPs of a dense forward pass at batch 1 and ``seq_len`` tokens (see the module convention)."""
    _check_seq_len(seq_len)
    lin, att = _layer_flops(
        shape,
        seq_len,
        alive_heads=shape.n_heads,
        attention_density=1.0,
        alive_neurons=shape.intermediate,
        ffn_density=1.0,
    )
    return FlopCount(
        linear=shape.n_layers * lin + _head_flops(shape, seq_len),
        attention=shape.n_layers * att,
    )


@dataclass(frozen=True)
class LayerSparsity:
    """Measured sparsity of one layer on the evaluation set."""

    attention_density: float  # kept edges / valid edges, in [0, 1]
    dead_heads: int = 0  # heads whose gates were all closed on the evaluation set
    ffn_density: float = 1.0  # nonzero FFN activations / all, in [0, 1]
    dead_neurons: int = 0  # FFN neurons never active on the evaluation set


def _validate_layers(shape: ArchShape, layers: Sequence[LayerSparsity]) -> None:
    if len(layers) != shape.n_layers:
        raise ValueError(f"expected {shape.n_layers} LayerSparsity entries (one per layer), got {len(layers)}")
    for i, layer in enumerate(layers):
        if not 0.0 <= layer.attention_density <= 1.0:
            raise ValueError(f"layer {i}: attention_density must be in [0, 1], got {layer.attention_density}")
        if not 0.0 <= layer.ffn_density <= 1.0:
            raise ValueError(f"layer {i}: ffn_density must be in [0, 1], got {layer.ffn_density}")
        if not 0 <= layer.dead_heads <= shape.n_heads:
            raise ValueError(f"layer {i}: dead_heads must be in [0, {shape.n_heads}], got {layer.dead_heads}")
        live = (shape.n_heads - layer.dead_heads) / shape.n_heads
        if layer.attention_density > live + 1e-9:
            # a dead head keeps no edge, so the kept fraction over all heads is at most the live fraction
            raise ValueError(
                f"layer {i}: attention_density {layer.attention_density} exceeds the live-head fraction "
                f"{live} ({layer.dead_heads} of {shape.n_heads} heads dead keep no edge)"
            )
        if not 0 <= layer.dead_neurons <= shape.intermediate:
            raise ValueError(f"layer {i}: dead_neurons must be in [0, {shape.intermediate}], got {layer.dead_neurons}")


def effective_flops(shape: ArchShape, seq_len: int, layers: Sequence[LayerSparsity]) -> FlopCount:
    """FLOPs that a sparsity-aware implementation must still spend, per the measured pattern.

    Per layer ``l`` (``d`` hidden, ``I`` intermediate, ``H`` heads, ``L`` tokens):

    * Q, K, V, O: ``4 * 2*L*d*d * (H - dead_heads) / H`` -- a dead head's columns of Q, K, V and
      its rows of O need never be computed.
    * Q K^T: ``2*L*L*d * (H - dead_heads) / H`` -- in full for every live head: gates, top-k and
      budgets read all of a head's scores to decide which edges to keep, so closing an edge never
      saves its score. A dead head (all gates closed on the evaluation set) saves its scores too.
    * A V: ``2*L*L*d * attention_density`` -- only kept edges are weighted; the density is measured
      over all heads, dead ones included (they contribute zero kept edges), so it is not scaled again.
    * FFN up: ``2*L*d*(I - dead_neurons)`` -- a neuron that never fires can be pruned from W1.
    * FFN down: ``2*L*I*d * ffn_density`` -- a zero activation skips its W2 row; dead neurons are
      zero everywhere, so they are already inside the density.

    Head FLOPs (pooler, classifier, LM head) are unchanged. A fully dense ``LayerSparsity``
    (``1.0, 0, 1.0, 0``) on every layer returns exactly :func:`dense_flops`. Result in FLOPs.
    """
    _check_seq_len(seq_len)
    _validate_layers(shape, layers)
    linear = 0.0
    attention = 0.0
    for layer in layers:
        lin, att = _layer_flops(
            shape,
            seq_len,
            alive_heads=shape.n_heads - layer.dead_heads,
            attention_density=layer.attention_density,
            alive_neurons=shape.intermediate - layer.dead_neurons,
            ffn_density=layer.ffn_density,
        )
        linear += lin
        attention += att
    return FlopCount(linear=linear + _head_flops(shape, seq_len), attention=attention)


def static_flops(shape: ArchShape, seq_len: int, heads_kept: Sequence[int], neurons_kept: Sequence[int]) -> FlopCount:
    """FLOPs of the model with only ``heads_kept[l]`` heads and ``neurons_kept[l]`` FFN neurons in layer ``l``,
    run with dense kernels: what physical pruning leaves (no per-token or per-edge credit).

    A layer with 0 heads (or 0 neurons) has lost its whole attention (or FFN) sublayer. This is
    :func:`effective_flops` of the pattern in which every kept unit is fully dense and every other is
    dead, so the two never disagree.
    """
    if len(heads_kept) != shape.n_layers or len(neurons_kept) != shape.n_layers:
        raise ValueError(f"expected {shape.n_layers} kept-head and kept-neuron counts, one per layer")
    layers = []
    for h, n in zip(heads_kept, neurons_kept):
        if not (0 <= h <= shape.n_heads and 0 <= n <= shape.intermediate):
            raise ValueError(
                f"kept counts out of range: {h} heads of {shape.n_heads}, {n} neurons of {shape.intermediate}"
            )
        layers.append(
            LayerSparsity(
                attention_density=h / shape.n_heads,
                dead_heads=shape.n_heads - h,
                ffn_density=n / shape.intermediate,
                dead_neurons=shape.intermediate - n,
            )
        )
    return effective_flops(shape, seq_len, layers)


@dataclass(frozen=True)
class UnitCosts:
    """What one structural unit costs in a forward pass (batch 1, ``seq_len`` tokens), in FLOPs.

    ``head``: one attention head's share of Q, K, V, O (``4 * 2*L*d*d / H``) and of both attention
    products (``2 * 2*L*L*d / H``); ``neuron``: one FFN neuron's row of W1 and column of W2
    (``2 * 2*L*d``); ``fixed``: what no structural mask removes (pooler, classifier, LM head).
    """

    head: float
    neuron: float
    fixed: float


def unit_costs(shape: ArchShape, seq_len: int) -> UnitCosts:
    """The :class:`UnitCosts` of ``shape`` at ``seq_len`` tokens (the module's counting convention)."""
    _check_seq_len(seq_len)
    d, L = shape.hidden, seq_len
    head = (4 * 2 * L * d * d + 2 * 2 * L * L * d) / shape.n_heads
    return UnitCosts(head=float(head), neuron=float(2 * 2 * L * d), fixed=_head_flops(shape, seq_len))


def expected_static_flops(
    shape: ArchShape,
    seq_len: int,
    head_keep: torch.Tensor,
    neuron_keep: torch.Tensor,
    attn_layer_keep: torch.Tensor | None = None,
    ffn_layer_keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Expected :func:`static_flops` under independent keep probabilities, differentiable in them.

    ``head_keep`` (layers, H) and ``neuron_keep`` (layers, I) are each unit's probability of being
    kept; ``attn_layer_keep`` / ``ffn_layer_keep`` (layers,) those of whole sublayers (a head is kept
    when it and its sublayer are). Static FLOPs are linear in the kept counts, so the expectation is
    exact: ``fixed + head * sum_l p_attn,l * sum_h p_lh + neuron * sum_l p_ffn,l * sum_n p_ln``. With 0/1
    probabilities it equals :func:`static_flops` of the kept counts.
    """
    if head_keep.shape != (shape.n_layers, shape.n_heads):
        raise ValueError(f"head_keep must be ({shape.n_layers}, {shape.n_heads}), got {tuple(head_keep.shape)}")
    if neuron_keep.shape != (shape.n_layers, shape.intermediate):
        raise ValueError(
            f"neuron_keep must be ({shape.n_layers}, {shape.intermediate}), got {tuple(neuron_keep.shape)}"
        )
    c = unit_costs(shape, seq_len)
    heads = head_keep.sum(dim=1)
    neurons = neuron_keep.sum(dim=1)
    if attn_layer_keep is not None:
        heads = heads * attn_layer_keep
    if ffn_layer_keep is not None:
        neurons = neurons * ffn_layer_keep
    return c.fixed + c.head * heads.sum() + c.neuron * neurons.sum()


def count_flops(model: Any, input_ids: Any) -> float:
    """Measured FLOPs of ``model(input_ids)`` under ``torch.utils.flop_counter.FlopCounterMode``.

    Runs one forward pass under ``torch.no_grad``. Only the aten ops FlopCounterMode knows are
    counted (matmuls; on CPU the fused SDPA kernel is not), so compare with ``dense_flops(...).linear``
    for ``attn_implementation="sdpa"`` models and with ``.total`` for ``"eager"`` ones.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(input_ids)
    return float(counter.get_total_flops())
