"""Pure tensor math of econ-ray attention: edge gates, top-k and budget masks (METHOD sections 3-4).

Shapes: scores are (B, H, Lq, Lk); ``valid`` is a bool tensor broadcastable to it, True where an
edge is allowed by the causal and padding masks.
"""

from __future__ import annotations

import torch


def logistic_noise(shape: torch.Size, *, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Logistic(0, 1) noise: log u - log(1 - u), u ~ U(0, 1)."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator).clamp_(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


def sample_gates(gate_logits: torch.Tensor, *, stochastic: bool) -> torch.Tensor:
    """Binary edge gates A with a straight-through gradient.

    Training: A = 1[g + noise > 0] in the forward pass, gradient of sigmoid(g + noise) in the
    backward pass. Evaluation: A = 1[g > 0], no gradient.
    """
    if not stochastic:
        return (gate_logits > 0).to(gate_logits.dtype)
    noisy = gate_logits + logistic_noise(gate_logits.shape, like=gate_logits)
    soft = torch.sigmoid(noisy)
    hard = (noisy > 0).to(gate_logits.dtype)
    return hard + (soft - soft.detach())  # (B, H, Lq, Lk): value exactly hard, gradient of soft


def expected_open_fraction(gate_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """C_attn = mean sigmoid(g) over valid edges: the expected fraction of open edges (differentiable)."""
    v = valid.expand_as(gate_logits).to(gate_logits.dtype)
    return (torch.sigmoid(gate_logits) * v).sum() / v.sum().clamp_min(1.0)


def strongest_edge(masked_scores: torch.Tensor) -> torch.Tensor:
    """Bool mask of each query's highest-scoring edge (ties: the first)."""
    idx = masked_scores.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(masked_scores, dtype=torch.bool).scatter_(-1, idx, True)


def topk_keep(masked_scores: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask keeping the k largest valid logits per query (all valid ones when fewer than k).

    Ties at the k-th value are all kept, so a row may keep slightly more than k edges.
    """
    k_eff = min(k, masked_scores.shape[-1])
    kth = masked_scores.topk(k_eff, dim=-1).values[..., -1:]
    return (masked_scores >= kth) & valid


def budget_threshold(masked_scores: torch.Tensor, valid: torch.Tensor, budget: float, iters: int = 40) -> torch.Tensor:
    """Scalar logit threshold t such that the mean number of kept edges per valid query row is ``budget``.

    Bisection on t (METHOD section 4: a Lagrangian relaxation to a budget, made concrete). Each row
    keeps its strongest edge regardless, so the count is monotone in t and never below 1.
    """
    v = valid.expand_as(masked_scores)
    rows = v.any(dim=-1)  # valid query rows
    n_rows = rows.sum().clamp_min(1)
    strongest = strongest_edge(masked_scores)
    finite = masked_scores[v]
    lo, hi = finite.min() - 1.0, finite.max() + 1.0  # count(lo) = all valid, count(hi) = 1 per row

    def mean_kept(t: torch.Tensor) -> torch.Tensor:
        keep = ((masked_scores >= t) & v) | (strongest & v)
        return keep.sum() / n_rows

    for _ in range(iters):
        mid = (lo + hi) / 2
        if mean_kept(mid) > budget:
            lo = mid
        else:
            hi = mid
    return hi


def budget_keep(masked_scores: torch.Tensor, valid: torch.Tensor, budget: float) -> torch.Tensor:
    """Bool mask of edges kept under the budget threshold (plus each row's strongest edge)."""
    t = budget_threshold(masked_scores, valid, budget)
    return ((masked_scores >= t) | strongest_edge(masked_scores)) & valid
