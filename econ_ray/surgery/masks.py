"""Apply pruning to a model with econ-ray attention installed, by masks in its runtime.

A mask multiplies a head's output or an FFN activation by 0 (pruned) or 1 (kept). The runtime then
sees pruned heads as heads with no open edge and pruned neurons as neurons never active, so
``econ_ray.training.evaluate`` counts their FLOPs as skipped (METHOD section 6) with no change to
the FLOPs code. No weight changes: clearing the masks restores the model exactly.

Also here: the passes over calibration data that the data-driven scores need (mean activation,
Michel et al. head importance), and uniform access to each layer's Q/K/V/O and FFN weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from econ_ray.attention.runtime import EconRuntime, ObservedActivation
from econ_ray.compute.shape import model_dims
from econ_ray.data import EncodedSplit, TaskSpec
from econ_ray.surgery.scores import per_example_loss


@dataclass(frozen=True)
class Block:
    """One transformer layer's weight modules. ``conv1d``: GPT-2's Conv1D, weight stored (in, out)."""

    family: str  # "bert" | "gpt2"
    attn: nn.Module  # the self-attention module (BertSelfAttention / GPT2Attention)
    attn_out: nn.Module  # O projection
    ffn_in: nn.Module  # W1
    ffn_out: nn.Module  # W2
    conv1d: bool

    @property
    def ffn_in_weight(self) -> torch.Tensor:
        """W1's weight: (I, d) for ``nn.Linear``, (d, I) for Conv1D."""
        return _weight(self.ffn_in)

    @property
    def ffn_out_weight(self) -> torch.Tensor:
        """W2's weight: (d, I) for ``nn.Linear``, (I, d) for Conv1D."""
        return _weight(self.ffn_out)

    @property
    def gate_bias(self) -> torch.Tensor:
        """The (H,) gate biases ``install`` added to this layer's attention."""
        return _weight(self.attn, "econ_gate_bias")


def _weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    w = getattr(module, name)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.{name} is not a tensor")
    return w


def blocks(model: nn.Module) -> list[Block]:
    """The layers of a BERT-family encoder or a GPT-2 model, in order."""
    if hasattr(getattr(model, "transformer", None), "h"):  # GPT2LMHeadModel and its pruned subclass
        layers = model.get_submodule("transformer.h")
        assert isinstance(layers, nn.ModuleList)
        return [
            Block(
                "gpt2",
                b.get_submodule("attn"),
                b.get_submodule("attn.c_proj"),
                b.get_submodule("mlp.c_fc"),
                b.get_submodule("mlp.c_proj"),
                True,
            )
            for b in layers
        ]
    enc = getattr(model.base_model, "encoder", None)
    if enc is None or not hasattr(enc, "layer"):
        raise ValueError(f"{type(model).__name__}: no BERT-style encoder.layer or GPT-2 transformer.h to prune")
    return [
        Block("bert", lay.attention.self, lay.attention.output.dense, lay.intermediate.dense, lay.output.dense, False)
        for lay in enc.layer
    ]


def ffn_weight_pairs(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (W1 (I, d), W2 (d, I)) in ``nn.Linear`` orientation, detached."""
    out = []
    for b in blocks(model):
        w1, w2 = b.ffn_in_weight.detach(), b.ffn_out_weight.detach()
        out.append((w1.t(), w2.t()) if b.conv1d else (w1, w2))
    return out


def _batches(split: EncodedSplit, batch_size: int, n_batches: int) -> Iterator[dict[str, torch.Tensor]]:
    n = min(len(split), batch_size * n_batches)
    for start in range(0, n, batch_size):
        yield split.batch(torch.arange(start, min(start + batch_size, n)))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def activation_sums(
    model: nn.Module, rt: EconRuntime, split: EncodedSplit, *, batch_size: int, n_batches: int
) -> tuple[list[torch.Tensor], int]:
    """Per layer the sum of |activation| of each FFN neuron over real tokens, and the token count."""
    observers = sorted((m for m in model.modules() if isinstance(m, ObservedActivation)), key=lambda m: m.layer)
    sums: dict[int, torch.Tensor] = {}
    tokens = 0

    def hook(mod: ObservedActivation, _inp: tuple, out: torch.Tensor) -> None:  # out: (B, L, I)
        tm = rt.token_mask
        m = (
            tm[..., None].to(out.dtype)
            if tm is not None and tm.shape == out.shape[:2]
            else torch.ones_like(out[..., :1])
        )
        s = (out.abs() * m).flatten(0, 1).sum(dim=0).float().cpu()
        sums[mod.layer] = s if mod.layer not in sums else sums[mod.layer] + s

    handles = [o.register_forward_hook(hook) for o in observers]
    was_training = model.training
    model.eval()
    device = _device(model)
    try:
        for batch in _batches(split, batch_size, n_batches):
            batch.pop("labels")
            model(**{k: v.to(device) for k, v in batch.items()})
            tokens += int(batch["attention_mask"].sum())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [sums[i] for i in sorted(sums)], tokens


def head_importance(
    model: nn.Module, rt: EconRuntime, split: EncodedSplit, task: TaskSpec, *, batch_size: int, n_batches: int
) -> torch.Tensor:
    """(layers, H) raw importance ``mean_x |dL(x)/dxi_h|`` (Michel et al. 2019), not yet normalised.

    Every example gets its own mask row ``xi[b, :]`` (all ones: the model is unchanged), so one
    backward of the summed per-example losses gives each example's gradient, whose absolute value
    is averaged: the paper's expectation of an absolute value, not the absolute value of a mean.
    """
    nl, h = len(blocks(model)), model_dims(model.config).n_heads
    total = torch.zeros(nl, h)
    seen = 0
    was_training = model.training
    model.eval()
    device = _device(model)
    saved = dict(rt.head_masks)
    try:
        with rt.override(head_masks=dict(saved)):
            for batch in _batches(split, batch_size, n_batches):
                labels = batch.pop("labels").to(device)
                b = len(labels)
                xi = [torch.ones(b, h, device=device, requires_grad=True) for _ in range(nl)]
                for i in range(nl):
                    rt.head_masks[i] = xi[i] * saved[i].to(device) if i in saved else xi[i]
                out = model(**{k: v.to(device) for k, v in batch.items()})
                loss = per_example_loss(out.logits, labels, task.kind).sum()
                grads = torch.autograd.grad(loss, xi)
                total += torch.stack([g.abs().sum(dim=0) for g in grads]).detach().cpu()
                seen += b
    finally:
        model.train(was_training)
    if not seen:
        raise ValueError("no calibration examples for head importance")
    return total / seen


def set_head_keep(rt: EconRuntime, keep: torch.Tensor, device: torch.device | str = "cpu") -> None:
    """Mask heads: ``keep`` (layers, H) bool; False = pruned."""
    rt.head_masks.clear()
    for i, row in enumerate(keep):
        if not bool(row.all()):
            rt.head_masks[i] = row.to(device=device, dtype=torch.float32)


def set_neuron_keep(rt: EconRuntime, keep: list[torch.Tensor], device: torch.device | str = "cpu") -> None:
    """Mask FFN neurons: one (I,) bool per layer; False = pruned."""
    rt.neuron_masks.clear()
    for i, row in enumerate(keep):
        if not bool(row.all()):
            rt.neuron_masks[i] = row.to(device=device, dtype=torch.float32)


@contextmanager
def masked(
    rt: EconRuntime,
    *,
    heads: torch.Tensor | None = None,
    neurons: list[torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[EconRuntime]:
    """Apply head and/or neuron keep-masks for the duration of the block; the previous masks come back after."""
    with rt.override(head_masks=dict(rt.head_masks), neuron_masks=dict(rt.neuron_masks)):
        if heads is not None:
            set_head_keep(rt, heads, device)
        if neurons is not None:
            set_neuron_keep(rt, neurons, device)
        yield rt
