"""Optimisation engines: what the training loop needs from an optimiser, as a Protocol.

The loop only calls ``backward``, ``step`` and reads ``lr``, so the same loop runs with plain
PyTorch AdamW here and with a DeepSpeed engine inside a Ray Train worker.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn


class Engine(Protocol):
    module: nn.Module

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> None:
        """Optimiser step, scheduler step, zero the gradients."""

    @property
    def lr(self) -> float: ...

    def state_dict(self) -> dict:
        """Optimiser and LR-schedule state of this process (tensors and plain values only)."""

    def load_state_dict(self, state: dict) -> None: ...


def restore_schedule(optimizer: torch.optim.Optimizer, scheduler, state: dict) -> None:
    """Load a LambdaLR's position and put its current LR back into the optimiser's groups (a loaded
    scheduler only changes the LR at its next step)."""
    scheduler.load_state_dict(state)
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
        group["lr"] = lr


def warmup_linear(total_steps: int, warmup_ratio: float):
    """LR multiplier: linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0."""
    warm = max(1, int(round(warmup_ratio * total_steps))) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return factor


def warmup_cosine(total_steps: int, warmup_ratio: float):
    """LR multiplier: linear warm-up over ``warmup_ratio`` of the steps, then cosine decay to 0."""
    warm = max(1, int(round(warmup_ratio * total_steps))) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def lr_schedule(schedule: str, total_steps: int, warmup_ratio: float):
    """The LR multiplier of ``training.schedule``: ``linear`` or ``cosine`` decay after the warm-up."""
    if schedule == "cosine":
        return warmup_cosine(total_steps, warmup_ratio)
    if schedule == "linear":
        return warmup_linear(total_steps, warmup_ratio)
    raise ValueError(f"training.schedule: expected linear or cosine, got {schedule!r}")


def key_biases(model: nn.Module) -> list[nn.Parameter]:
    """The key-projection biases of the gated attention modules (those holding ``econ_gate_bias``) with a
    separate key projection (``module.key``, BERT family); raises when a gated module has none (GPT-2's
    ``c_attn`` holds query, key and value biases in one tensor)."""
    found: list[nn.Parameter] = []
    for name, module in model.named_modules():
        if not hasattr(module, "econ_gate_bias"):
            continue
        key = getattr(module, "key", None)
        if not isinstance(key, nn.Linear):
            raise ValueError(
                f"training.gate_key_bias: the gated attention {name or type(module).__name__} has no separate key "
                "projection (module.key), so its key bias cannot learn apart from the query and value biases; "
                "expected a BERT-family model, or gate_key_bias false"
            )
        if key.bias is not None and key.bias.requires_grad:
            found.append(key.bias)
    return found


def param_groups(
    model: nn.Module, *, lr: float, gate_lr: float | None, weight_decay: float, gate_key_bias: bool = False
) -> list[dict]:
    """AdamW groups: no decay on biases, LayerNorm and gate biases; gate biases (and, with
    ``gate_key_bias`` while the model's attention mode is gates, the gated modules' key biases) at
    ``gate_lr``."""
    # only while the gates are on: in a dense phase softmax leaves b_k a zero gradient up to rounding, which
    # Adam would turn into steps of a sizeable fraction of gate_lr, shifting the gates before they open
    rt = getattr(model, "econ_runtime", None)
    gates_on = getattr(rt, "mode", None) == "gates"
    with_gates = {id(p) for p in key_biases(model)} if gate_key_bias and gates_on else set()
    decay, no_decay, gates = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("econ_gate_bias") or id(p) in with_gates:
            gates.append(p)
        elif p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") or ".ln_" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr},
    ]
    if gates:
        groups.append({"params": gates, "weight_decay": 0.0, "lr": gate_lr or lr})
    return [g for g in groups if g["params"]]


class TorchEngine:
    """AdamW with linear warm-up and linear or cosine decay, and optional gradient-norm clipping."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float,
        gate_lr: float | None,
        weight_decay: float,
        total_steps: int,
        warmup_ratio: float,
        schedule: str = "linear",
        grad_clip: float | None = None,
        gate_key_bias: bool = False,
    ) -> None:
        self.module = model
        self.optimizer = torch.optim.AdamW(
            param_groups(model, lr=lr, gate_lr=gate_lr, weight_decay=weight_decay, gate_key_bias=gate_key_bias)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule(schedule, total_steps, warmup_ratio)
        )
        self.grad_clip = grad_clip

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        if self.grad_clip is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        restore_schedule(self.optimizer, self.scheduler, state["scheduler"])
