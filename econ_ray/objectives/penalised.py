"""Cost-penalised objective (seed 000, eq. 5, with a cost that has a gradient; METHOD section 3).

    L = L_task + lam * C_comp,   C_comp = sum_l w_l (alpha * C_attn,l + beta * C_ffn,l),  w_l = 1 / n_layers

Each C is a fraction of the dense layer's work in [0, 1] (expected open edges; positive FFN mass),
and the layer weights 1/n_layers make C_comp a fraction of the whole model's work, so lam means the
same on every model depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def compute_cost(
    attn_costs: Sequence[torch.Tensor], ffn_costs: Sequence[torch.Tensor], *, alpha: float, beta: float
) -> torch.Tensor:
    """C_comp in [0, alpha + beta]: layer-averaged weighted attention and FFN costs."""
    terms = []
    if alpha and attn_costs:
        terms.append(alpha * torch.stack(list(attn_costs)).mean())
    if beta and ffn_costs:
        terms.append(beta * torch.stack(list(ffn_costs)).mean())
    if not terms:
        ref = next(iter([*attn_costs, *ffn_costs]), None)
        return torch.zeros((), device=ref.device if ref is not None else None)
    return torch.stack(terms).sum()


def penalised_loss(
    task_loss: torch.Tensor,
    attn_costs: Sequence[torch.Tensor],
    ffn_costs: Sequence[torch.Tensor],
    *,
    lam: float,
    alpha: float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (L, C_comp) with L = L_task + lam * C_comp."""
    cost = compute_cost(attn_costs, ffn_costs, alpha=alpha, beta=beta)
    return task_loss + lam * cost, cost
