"""Scores and selections of post-hoc pruning baselines (pure math; no model, no side effects).

Units are scored so that a *low* score means "remove first". Three scores:

* FFN neuron weight magnitude: ``||W1[i, :]||_2 * ||W2[:, i]||_2``. The product is unchanged when a
  ReLU neuron's input row is scaled by c and its output column by 1/c (the function is unchanged),
  so the score cannot be gamed by that rescaling, unlike ``||W1[i, :]||`` alone.
* FFN neuron activation magnitude: mean ``|act_i|`` over the real tokens of calibration batches.
* Head importance of Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"):
  ``I_h = E_x |dL(x)/dxi_h|`` with ``xi_h`` a multiplier of head h's output (1 = unpruned),
  normalised per layer by the layer's L2 norm (their section 4.1), then pruned globally.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def check_ratio(ratio: float) -> float:
    """A pruning ratio (fraction of units removed) must lie in [0, 1)."""
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0.0 <= ratio < 1.0):
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio!r}")
    return float(ratio)


def ffn_magnitude_scores(w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """(I,) scores from W1 (I, d) and W2 (d, I), both in ``nn.Linear`` orientation (out, in)."""
    if w_in.shape[0] != w_out.shape[1]:
        raise ValueError(f"W1 {tuple(w_in.shape)} and W2 {tuple(w_out.shape)} disagree on the neuron count")
    return w_in.float().norm(dim=1) * w_out.float().norm(dim=0)


def mean_abs(sum_abs: torch.Tensor, count: int) -> torch.Tensor:
    """Mean absolute activation per neuron from a running sum over ``count`` tokens."""
    if count <= 0:
        raise ValueError("no calibration tokens were seen")
    return sum_abs.float() / count


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """(B,) task loss of each example: CE (classification), squared error (regression), mean token CE (lm).

    Summing these gives a scalar whose gradient with respect to a per-example head mask ``xi[b, h]``
    is ``dL(x_b)/dxi_h``: one backward pass yields every example's sensitivity.
    """
    if kind == "lm":
        lg, tgt = logits[:, :-1].float(), labels[:, 1:]
        tok = nn.functional.cross_entropy(lg.transpose(1, 2), tgt, ignore_index=-100, reduction="none")  # (B, L-1)
        n = (tgt != -100).sum(dim=1).clamp_min(1)
        return tok.sum(dim=1) / n
    if kind == "regression":
        return (logits.squeeze(-1).float() - labels.float()) ** 2
    return nn.functional.cross_entropy(logits.float(), labels, reduction="none")


def normalise_per_layer(importance: torch.Tensor) -> torch.Tensor:
    """(layers, H) importance divided by each layer's L2 norm (Michel et al. 2019, section 4.1)."""
    norm = importance.float().norm(dim=1, keepdim=True)
    return importance.float() / norm.clamp_min(1e-20)


def n_pruned(ratio: float, n_units: int) -> int:
    """How many of ``n_units`` a ratio removes (rounded to nearest)."""
    return int(round(check_ratio(ratio) * n_units))


def keep_lowest_removed(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Bool keep-mask of the same shape: the ``round(ratio * numel)`` lowest scores are False.

    Ties are broken by position (a stable sort), so the result is deterministic.
    """
    flat = scores.reshape(-1).float()
    n = n_pruned(ratio, flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if n:
        order = torch.sort(flat, stable=True).indices
        keep[order[:n]] = False
    return keep.view(scores.shape)


def keep_per_layer(scores: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """The same ratio removed inside every layer (FFN neurons: raw scores differ in scale across layers)."""
    return [keep_lowest_removed(s, ratio) for s in scores]
