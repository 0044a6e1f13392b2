"""Allocation metrics of attention rows (METHOD section 5): Gini, entropy in bits, density.

Rows are the last dimension; ``valid`` (bool, broadcastable) marks the positions a query may attend
to, and only those count (N = number of valid positions). Rows whose valid weights sum to zero
(a query with no open edge) are undefined and come back as NaN, so callers can count them apart.
"""

from __future__ import annotations

import torch


def gini_rows(w: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of each row, G = sum_i sum_j |w_i - w_j| / (2 N sum_i w_i), in O(N log N).

    With the valid weights sorted ascending w_(1) <= ... <= w_(N), the double sum equals
    2 * sum_i (2i - N - 1) w_(i), so G = sum_i (2i - N - 1) w_(i) / (N sum_i w_i).
    Invalid positions are sorted first (key -1) and carry zero weight, so they drop out once the
    rank is shifted by their count m: coefficient 2(i - m) - N - 1.
    """
    v = valid.expand_as(w)
    x = torch.where(v, w, torch.zeros_like(w))
    key = torch.where(v, x, torch.full_like(x, -1.0))
    order = key.argsort(dim=-1)
    xs = x.gather(-1, order)
    n = v.sum(dim=-1, keepdim=True).to(w.dtype)
    m = w.shape[-1] - n
    ranks = torch.arange(1, w.shape[-1] + 1, device=w.device, dtype=w.dtype)
    coef = 2 * (ranks - m) - n - 1
    total = x.sum(dim=-1)
    g = (coef * xs).sum(dim=-1) / (n.squeeze(-1) * total)
    return torch.where(total > 0, g, torch.full_like(g, float("nan")))


def entropy_bits_rows(w: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Shannon entropy H = -sum p log2 p of each row after normalising valid weights (0 log 0 = 0)."""
    v = valid.expand_as(w)
    x = torch.where(v, w, torch.zeros_like(w))
    total = x.sum(dim=-1, keepdim=True)
    p = x / total.clamp_min(torch.finfo(w.dtype).tiny)
    plogp = torch.where(p > 0, p * torch.log2(p.clamp_min(torch.finfo(w.dtype).tiny)), torch.zeros_like(p))
    h = -plogp.sum(dim=-1)
    return torch.where(total.squeeze(-1) > 0, h, torch.full_like(h, float("nan")))


def density(kept: torch.Tensor, valid: torch.Tensor) -> float:
    """Kept edges / valid edges (1.0 when nothing is valid)."""
    v = valid.expand_as(kept)
    n = int(v.sum())
    return float((kept & v).sum()) / n if n else 1.0
