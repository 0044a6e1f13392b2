"""Learned structured masks: hard-concrete (L0) gates on attention heads, FFN neurons and whole sublayers.

Each unit has a log-alpha; a hard-concrete variable (Louizos, Welling & Kingma 2018) is a stretched,
clamped binary-concrete sample, so it is exactly 0 or exactly 1 with positive probability and has a
gradient in between. A head is kept when its own gate and its layer's attention-sublayer gate are;
a neuron when its gate and its layer's FFN-sublayer gate are (CoFi's coarse and fine masks, Xia et
al. 2022). The masks reach the model through the runtime's ``head_masks`` and ``neuron_masks``
(``econ_ray.attention.runtime``), which multiply each head's attention weights and each FFN
activation, so the statistics and the FLOPs code see a zero gate as a removed unit.

The functions at the top are the distribution's math (no side effects); :class:`StructuredMasks`
holds the parameters and writes samples into a runtime.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from econ_ray.attention.runtime import EconRuntime

BETA = 2.0 / 3.0  # temperature
GAMMA, ZETA = -0.1, 1.1  # stretch interval: (GAMMA, ZETA) is clamped to [0, 1]
_EPS = 1e-6


def log_alpha_for(keep: float) -> float:
    """The log-alpha whose hard-concrete gate is nonzero with probability ``keep`` (in (0, 1))."""
    if not 0.0 < keep < 1.0:
        raise ValueError(f"a mask's initial keep probability must be in (0, 1), got {keep}")
    return math.log(keep / (1.0 - keep)) + BETA * math.log(-GAMMA / ZETA)


def keep_probability(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z > 0) of hard-concrete gates: ``sigmoid(log_alpha - BETA * log(-GAMMA / ZETA))``."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


def sample(log_alpha: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One hard-concrete sample per entry, differentiable in ``log_alpha``."""
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device, dtype=log_alpha.dtype)
    u = u.clamp(_EPS, 1.0 - _EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def deterministic(log_alpha: torch.Tensor) -> torch.Tensor:
    """The test-time gate: ``clamp(sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)``."""
    return (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Cut:
    """A deterministic structure: which heads (layers, H) and neurons (layers, I) stay (bool)."""

    heads: torch.Tensor
    neurons: torch.Tensor

    @property
    def heads_kept(self) -> list[int]:
        return [int(x) for x in self.heads.sum(dim=1)]

    @property
    def neurons_kept(self) -> list[int]:
        return [int(x) for x in self.neurons.sum(dim=1)]


def cut_to_budget(
    head_score: torch.Tensor, neuron_score: torch.Tensor, *, head_cost: float, neuron_cost: float, budget: float
) -> Cut:
    """The units to keep so that their cost fits ``budget``: greedily by descending score, each unit kept
    when it still fits (so the spend is within one unit of the budget unless everything fits).

    ``head_score`` (layers, H) and ``neuron_score`` (layers, I) rank the units (higher = keep first;
    ties go to heads, then to the lower index); ``budget`` is the FLOPs left for heads and neurons.
    """
    scores = torch.cat([head_score.flatten(), neuron_score.flatten()]).double().cpu()
    costs = torch.cat(
        [torch.full((head_score.numel(),), head_cost), torch.full((neuron_score.numel(),), neuron_cost)]
    ).double()
    order = torch.argsort(-scores, stable=True)
    keep = torch.zeros(len(scores), dtype=torch.bool)
    left = float(budget)
    for i in order.tolist():
        c = float(costs[i])
        if c <= left + 1e-9:
            keep[i] = True
            left -= c
    nh = head_score.numel()
    return Cut(keep[:nh].view_as(head_score).clone(), keep[nh:].view_as(neuron_score).clone())


def cut_skipping_unused(
    head_score: torch.Tensor,
    neuron_score: torch.Tensor,
    *,
    head_cost: float,
    neuron_cost: float,
    budget: float,
    unused: Callable[[Cut], torch.Tensor | None],
    rounds: int = 3,
) -> Cut:
    """:func:`cut_to_budget`, then without the kept neurons that ``unused(cut)`` finds never used
    ((layers, I) bool; e.g. ReLU neurons whose activation is zero on every calibration token): static
    FLOPs drop those whatever the cut keeps, so the budget they held goes to the next units by score.
    A refill can change which neurons fire and bring in unused ones, so this repeats up to ``rounds``
    refills; a neuron found unused once stays out, and what the last refill brought in is probed once
    more and dropped if unused (then without a refill)."""
    cut = cut_to_budget(head_score, neuron_score, head_cost=head_cost, neuron_cost=neuron_cost, budget=budget)
    out = torch.zeros_like(cut.neurons)
    for refill in range(rounds + 1):
        found = unused(cut)
        if found is None:
            break
        found = found.to(torch.bool).cpu() & cut.neurons & ~out
        if not bool(found.any()):
            break
        out |= found
        if refill == rounds:
            break
        lowest = min(float(head_score.min()), float(neuron_score.min())) - 1.0  # after every other unit
        cut = cut_to_budget(
            head_score,
            neuron_score.masked_fill(out.to(neuron_score.device), lowest),
            head_cost=head_cost,
            neuron_cost=neuron_cost,
            budget=budget,
        )
    return Cut(cut.heads, cut.neurons & ~out)


class StructuredMasks:
    """Log-alphas of every head, neuron, attention sublayer and FFN sublayer of a model.

    Not a module of the model (the model's weights and its checkpoints stay those of the stock
    architecture): the objective that owns them optimises them and saves them in its own state.
    """

    def __init__(self, n_layers: int, n_heads: int, intermediate: int, *, init_keep: float, device: torch.device):
        la = log_alpha_for(init_keep)

        def param(*shape: int) -> torch.Tensor:
            return torch.full(shape, la, device=device, requires_grad=True)

        self.heads = param(n_layers, n_heads)
        self.neurons = param(n_layers, intermediate)
        self.attn_layers = param(n_layers)
        self.ffn_layers = param(n_layers)

    def parameters(self) -> list[torch.Tensor]:
        return [self.heads, self.neurons, self.attn_layers, self.ffn_layers]

    def keep_probabilities(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(heads, neurons, attention sublayers, FFN sublayers) P(z > 0), differentiable."""
        return tuple(keep_probability(p) for p in self.parameters())  # type: ignore[return-value]

    def unit_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each head's and neuron's probability of being kept, its sublayer's included (no gradient)."""
        with torch.no_grad():
            h, n, a, f = self.keep_probabilities()
            return h * a[:, None], n * f[:, None]

    def write(self, rt: EconRuntime, *, stochastic: bool) -> None:
        """Put sampled (training) or deterministic (evaluation, detached) gates into the runtime."""
        if stochastic:
            h, n, a, f = (sample(p) for p in self.parameters())
        else:
            with torch.no_grad():
                h, n, a, f = (deterministic(p) for p in self.parameters())
        heads, neurons = h * a[:, None], n * f[:, None]
        rt.head_masks.clear()
        rt.neuron_masks.clear()
        for i in range(heads.shape[0]):
            rt.head_masks[i] = heads[i]
            rt.neuron_masks[i] = neurons[i]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            name: p.detach().clone()
            for name, p in zip(("heads", "neurons", "attn_layers", "ffn_layers"), self.parameters())
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in zip(("heads", "neurons", "attn_layers", "ffn_layers"), self.parameters()):
                p.copy_(state[name].to(p.device))


def write_cut(rt: EconRuntime, cut: Cut, device: torch.device | str = "cpu") -> None:
    """Fixed 0/1 masks of ``cut`` in the runtime (a layer with nothing removed gets no mask)."""
    rt.head_masks.clear()
    rt.neuron_masks.clear()
    for i in range(cut.heads.shape[0]):
        if not bool(cut.heads[i].all()):
            rt.head_masks[i] = cut.heads[i].to(device=device, dtype=torch.float32)
        if not bool(cut.neurons[i].all()):
            rt.neuron_masks[i] = cut.neurons[i].to(device=device, dtype=torch.float32)
