"""econ-ray attention for Hugging Face models, installed through transformers' attention registry.

``install(model, ...)`` registers one attention function under the name ``"econ"`` in
``AttentionInterface`` (and the eager mask builder under the same name in
``AttentionMaskInterface``, so the function receives the usual additive (B, 1, Lq, Lk) mask
rather than the raw 2-D padding mask), switches the model to it, adds one gate-bias parameter per
head to every self-attention module and wraps every FFN activation in an observer. No weight of
the model changes: ``mode="dense"`` reproduces the stock model.

All per-forward state (costs for the loss, statistics for the metrics) lives in one
:class:`EconRuntime` shared by the layers; the model reaches it through ``model.econ_runtime``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from econ_ray.attention import kernels
from econ_ray.compute.shape import model_dims
from econ_ray.metrics.allocation import entropy_bits_rows, gini_rows

ATTN_NAME = "econ"
MODES = ("dense", "gates", "topk", "budget")
_MODE_FIELDS = ("mode", "k", "budget")


@dataclass
class LayerStats:
    """Running sums over an evaluation pass for one layer."""

    kept: int = 0
    valid: int = 0
    rows: int = 0
    empty_rows: int = 0
    gini_sum: float = 0.0
    gini_n: int = 0
    entropy_sum: float = 0.0
    entropy_n: int = 0
    head_open: torch.Tensor | None = None  # (H,) bool: any edge of the head open
    ffn_nonzero: int = 0
    ffn_total: int = 0
    neuron_active: torch.Tensor | None = None  # (I,) bool: neuron ever nonzero


@dataclass
class EconRuntime:
    """Shared state of the installed attention and FFN observers."""

    mode: str = "dense"
    k: int | None = None
    budget: float | None = None
    keep_strongest: bool = False
    collect: bool = False  # accumulate allocation statistics (evaluation)
    collect_distribution: bool = True  # with collect: also Gini and entropy (a sort per row: costlier)
    need_costs: bool = False  # record differentiable costs (training with a price or a constraint)
    token_mask: torch.Tensor | None = None  # (B, L) 1 for real tokens, set by a pre-hook
    attn_costs: dict[int, torch.Tensor] = field(default_factory=dict)
    ffn_costs: dict[int, torch.Tensor] = field(default_factory=dict)
    stats: dict[int, LayerStats] = field(default_factory=dict)
    # Structural masks (model surgery, econ_ray.surgery): layer -> multiplier of each head's output,
    # (H,) or per example (B, H) (Michel et al. 2019's xi_h), and of each FFN activation, (I,).
    # A zero entry removes the unit: its edges count as closed and its activations as zero, so the
    # statistics (dead heads, dead neurons) and hence effective FLOPs see the pruning.
    head_masks: dict[int, torch.Tensor] = field(default_factory=dict)
    neuron_masks: dict[int, torch.Tensor] = field(default_factory=dict)
    # Off by default. Set to a dict to capture attention: every layer then stores the probabilities it
    # applies to V, (B, H, Lq, Lk) detached, under its layer index (the gated / top-k weights, not the
    # raw softmax). Used by the heatmaps (econ_ray.experiments.heatmap); set back to None after use.
    capture: dict[int, torch.Tensor] | None = None
    # Off by default. Set to a function (layer, weights (B, H, Lq, Lk), value (B, H, Lk, dh)) -> (B, H, Lq, dh)
    # to compute every layer's attention output in place of weights @ value: activation and attribution
    # patching of heads and single edges (econ_ray.experiments.circuit). Set back to None after use.
    patch: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def set_mode(self, mode: str, *, k: int | None = None, budget: float | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"attention mode must be one of {MODES}, got {mode!r}")
        if mode == "topk" and not k:
            raise ValueError("topk mode needs k >= 1")
        if mode == "budget" and not (budget is not None and budget >= 1):
            # every query keeps its strongest edge (kernels.budget_keep): a mean below 1 is unreachable
            raise ValueError(f"budget mode needs budget >= 1 (each query keeps its strongest edge), got {budget}")
        self.mode, self.k, self.budget = mode, k, budget

    @contextmanager
    def override(self, **fields: Any) -> Iterator[EconRuntime]:
        """Set runtime fields for the duration of the block; their previous values come back afterwards,
        also when the block raises. ``mode``, ``k`` and ``budget`` are checked as :meth:`set_mode` checks
        them (a field not named keeps its value). E.g. ``with rt.override(mode="topk", k=4): evaluate(...)``.
        """
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"EconRuntime has no field(s) {', '.join(unknown)}")
        saved = {name: getattr(self, name) for name in fields}
        try:
            if any(name in fields for name in _MODE_FIELDS):
                self.set_mode(
                    fields.get("mode", self.mode), k=fields.get("k", self.k), budget=fields.get("budget", self.budget)
                )
            for name, value in fields.items():
                if name not in _MODE_FIELDS:
                    setattr(self, name, value)
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def pop_costs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Costs recorded by the last forward, in layer order; clears them."""
        attn = [self.attn_costs[i] for i in sorted(self.attn_costs)]
        ffn = [self.ffn_costs[i] for i in sorted(self.ffn_costs)]
        self.attn_costs, self.ffn_costs = {}, {}
        return attn, ffn

    def reset_stats(self) -> None:
        self.stats = {}

    def layer(self, idx: int) -> LayerStats:
        return self.stats.setdefault(idx, LayerStats())


def _valid_edges(mask: torch.Tensor | None, token_mask: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
    """Bool (B, 1, Lq, Lk): edges allowed by the causal/padding mask and coming from real query tokens."""
    b, _, lq, lk = scores.shape
    if mask is not None:
        valid = mask > torch.finfo(mask.dtype).min / 2 if mask.dtype.is_floating_point else mask.bool()
        valid = valid.expand(b, 1, lq, lk)
    else:
        valid = torch.ones(b, 1, lq, lk, dtype=torch.bool, device=scores.device)
    if token_mask is not None and token_mask.shape == (b, lk) and lq == lk:
        tm = token_mask.bool()
        valid = valid & tm[:, None, :, None] & tm[:, None, None, :]
    return valid


def econ_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in attention function: (B, H, L, dh) in, ((B, L, H, dh), weights (B, H, Lq, Lk)) out."""
    rt = cast(EconRuntime, module.econ_runtime)
    layer = cast(int, module.econ_layer)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, H, Lq, Lk)
    masked = scores + attention_mask if attention_mask is not None else scores
    need_valid = rt.mode != "dense" or rt.collect
    valid = _valid_edges(attention_mask, rt.token_mask, scores) if need_valid else None

    keep: torch.Tensor | None = None  # bool edges kept (None: all valid)
    gate: torch.Tensor | None = None
    if rt.mode == "dense":
        weights = torch.softmax(masked, dim=-1)
    elif rt.mode in ("topk", "budget"):
        assert valid is not None  # computed in every mode but dense
        if rt.mode == "topk":
            assert rt.k is not None  # set_mode checked it
            keep = kernels.topk_keep(masked, valid, rt.k)
        else:
            assert rt.budget is not None  # set_mode checked it
            keep = kernels.budget_keep(masked, valid, rt.budget)
        # renormalised over the kept edges (METHOD section 4); rows with nothing valid stay zero
        weights = torch.softmax(masked.masked_fill(~keep, torch.finfo(masked.dtype).min), dim=-1) * keep
    else:  # gates
        assert valid is not None  # computed in every mode but dense
        bias = cast(torch.Tensor, module.econ_gate_bias).view(1, -1, 1, 1)
        gate_logits = scores + bias  # g_ij = q_i . k_j / sqrt(d) + b_h
        if rt.need_costs:
            rt.attn_costs[layer] = kernels.expected_open_fraction(gate_logits, valid)
        # (A * softmax) V: dropped mass is not renormalised (METHOD section 3)
        if module.training and not rt.collect:
            # training: the fused kernel keeps one extra NxN per head alive for backward, not four
            force = kernels.strongest_edge(masked) if rt.keep_strongest else None
            weights = kernels.gated_softmax(masked, gate_logits, force)
        else:
            gate = kernels.sample_gates(gate_logits, stochastic=module.training)
            if rt.keep_strongest:
                gate = torch.where(kernels.strongest_edge(masked), torch.ones_like(gate), gate)
            weights = torch.softmax(masked, dim=-1) * gate
            keep = (gate > 0) & valid

    head_mask = rt.head_masks.get(layer)
    if head_mask is not None:
        hm = head_mask[:, :, None, None] if head_mask.dim() == 2 else head_mask.view(1, -1, 1, 1)  # (B|1, H, 1, 1)
        weights = weights * hm.to(weights.dtype)
        if valid is not None:
            keep = (valid if keep is None else keep) & (hm != 0)

    if rt.capture is not None:
        rt.capture[layer] = weights.detach()
    if rt.collect:
        assert valid is not None
        _observe_attention(rt.layer(layer), weights.detach(), keep, valid, rt.collect_distribution)
    dropped = nn.functional.dropout(weights, p=dropout, training=module.training)
    if rt.patch is not None:
        out = rt.patch(layer, dropped.to(value.dtype), value)
    else:
        out = torch.matmul(dropped.to(value.dtype), value)  # (B, H, Lq, dh)
    return out.transpose(1, 2).contiguous(), weights


@torch.no_grad()
def _observe_attention(
    st: LayerStats, weights: torch.Tensor, keep: torch.Tensor | None, valid: torch.Tensor, distribution: bool
) -> None:
    v = valid.expand_as(weights)
    kept = v if keep is None else (keep & v)
    rows = v.any(dim=-1)  # (B, H, Lq) real query rows
    st.kept += int(kept.sum())
    st.valid += int(v.sum())
    st.rows += int(rows.sum())
    st.empty_rows += int((rows & ~kept.any(dim=-1)).sum())
    head_open = kept.flatten(2).any(dim=-1).any(dim=0)  # (H,)
    st.head_open = head_open if st.head_open is None else (st.head_open | head_open)
    if not distribution:
        return
    g = gini_rows(weights.float(), v)[rows]
    h = entropy_bits_rows(weights.float(), v)[rows]
    g, h = g[~g.isnan()], h[~h.isnan()]
    st.gini_sum += float(g.sum())
    st.gini_n += g.numel()
    st.entropy_sum += float(h.sum())
    st.entropy_n += h.numel()


class ObservedActivation(nn.Module):
    """Wraps an FFN activation: records the FFN cost of the pre-activation and the density of the output.

    C_ffn = sum ReLU(h) / sum |h| over real tokens and neurons, with the denominator detached: a
    fraction in [0, 1] that is invariant to rescaling W1 (the "W1 shrinks, W2 grows" escape gains
    nothing), and whose gradient pushes positive pre-activations towards zero.
    """

    runtime: EconRuntime  # shared state, not a submodule (set with object.__setattr__)

    def __init__(self, act: nn.Module, runtime: EconRuntime, layer: int) -> None:
        super().__init__()
        self.act = act
        self.layer = layer
        object.__setattr__(self, "runtime", runtime)  # shared state, not a submodule

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (B, L, I)
        out = self.act(h)
        rt = self.runtime
        neuron_mask = rt.neuron_masks.get(self.layer)
        if neuron_mask is not None:
            out = out * neuron_mask.to(out.dtype)  # (I,) broadcast over (B, L, I)
        if rt.need_costs or rt.collect:
            tm = rt.token_mask
            m = tm[..., None].to(h.dtype) if tm is not None and tm.shape == h.shape[:2] else torch.ones_like(h[..., :1])
            if rt.need_costs:
                num = (torch.relu(h) * m).sum()
                den = (h.abs() * m).sum().detach().clamp_min(1e-12)
                rt.ffn_costs[self.layer] = num / den
            if rt.collect:
                with torch.no_grad():
                    nz = (out != 0) & m.bool()
                    st = rt.layer(self.layer)
                    st.ffn_nonzero += int(nz.sum())
                    st.ffn_total += int(m.sum()) * h.shape[-1]
                    active = nz.flatten(0, 1).any(dim=0)
                    st.neuron_active = active if st.neuron_active is None else (st.neuron_active | active)
        return out


@dataclass(frozen=True)
class Installed:
    """What ``install`` found: one entry per layer."""

    attention_modules: list[nn.Module]
    ffn_parents: list[tuple[nn.Module, str]]  # (module, attribute holding the activation)
    n_heads: int


def _register() -> None:
    AttentionInterface.register(ATTN_NAME, econ_attention_forward)
    AttentionMaskInterface.register(ATTN_NAME, eager_mask)


def _find_layers(model: nn.Module) -> Installed:
    attn, ffn = [], []
    for module in model.modules():
        name = type(module).__name__
        # BERT family: BertSelfAttention (and relatives such as RobertaSelfAttention); GPT-2: GPT2Attention
        # (an exported layer whose heads were all removed has hf_pruned's empty attention: no scores)
        empty = getattr(module, "econ_empty_attention", False)
        if hasattr(module, "layer_idx") and (name.endswith("SelfAttention") or name == "GPT2Attention" or empty):
            if not getattr(module, "is_cross_attention", False):
                attn.append(module)
        if hasattr(module, "intermediate_act_fn") and hasattr(module, "dense"):
            ffn.append((module, "intermediate_act_fn"))
        elif hasattr(module, "c_fc") and hasattr(module, "act") and hasattr(module, "c_proj"):
            ffn.append((module, "act"))
    if not attn:
        raise ValueError(
            f"{type(model).__name__}: no BERT-family or GPT-2-family self-attention modules found; "
            "econ-ray supports those architectures"
        )
    return Installed(attn, ffn, model_dims(model.config).n_heads)


def install(
    model: nn.Module,
    *,
    mode: str = "dense",
    k: int | None = None,
    budget: float | None = None,
    gate_bias_init: float = 3.0,
    keep_strongest: bool = False,
    ffn_activation: str = "keep",
) -> EconRuntime:
    """Install econ-ray attention and FFN observers in ``model`` (in place); return the runtime."""
    if getattr(model, "econ_runtime", None) is not None:
        raise ValueError("econ-ray attention is already installed in this model")
    if ffn_activation not in ("keep", "relu"):
        raise ValueError(f"ffn_activation must be 'keep' or 'relu', got {ffn_activation!r}")
    _register()
    found = _find_layers(model)
    rt = EconRuntime(keep_strongest=keep_strongest)
    rt.set_mode(mode, k=k, budget=budget)
    ref = next(model.parameters())
    for i, module in enumerate(found.attention_modules):
        object.__setattr__(module, "econ_layer", i)
        object.__setattr__(module, "econ_runtime", rt)
        module.econ_gate_bias = nn.Parameter(torch.full((found.n_heads,), float(gate_bias_init), device=ref.device))
    for i, (parent, attr) in enumerate(found.ffn_parents):
        act = getattr(parent, attr)
        if ffn_activation == "relu":
            act = nn.ReLU()
        setattr(parent, attr, ObservedActivation(act, rt, i))
    if ffn_activation == "relu":
        for key in ("hidden_act", "activation_function"):
            if hasattr(model.config, key):
                setattr(model.config, key, "relu")
    cast(Any, model).set_attn_implementation(ATTN_NAME)

    def _capture_mask(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        tm = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if tm is None and ids is not None:
            tm = torch.ones(ids.shape[:2], dtype=torch.long, device=ids.device)
        rt.token_mask = tm if tm is not None and tm.dim() == 2 else None

    model.register_forward_pre_hook(_capture_mask, with_kwargs=True)
    object.__setattr__(model, "econ_runtime", rt)
    return rt


def runtime_of(model: nn.Module) -> EconRuntime:
    """The :class:`EconRuntime` that ``install`` attached to ``model`` (``model.econ_runtime``)."""
    rt = getattr(model, "econ_runtime", None)
    if not isinstance(rt, EconRuntime):
        raise ValueError(f"{type(model).__name__}: econ-ray attention is not installed in this model")
    return rt


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The gate biases added by ``install`` (one (H,) vector per layer)."""
    return [p for n, p in model.named_parameters() if n.endswith("econ_gate_bias")]
