"""Pure tensor math of econ-ray attention: edge gates, top-k and budget masks (METHOD sections 3-4).

Shapes: scores are (B, H, Lq, Lk); ``valid`` is a bool tensor broadcastable to it, True where an
edge is allowed by the causal and padding masks.
"""

from __future__ import annotations

import torch


def logistic_noise(shape: torch.Size, *, like: torch.Tensor) -> torch.Tensor:
    """Logistic(0, 1) noise: log u - log(1 - u), u ~ U(0, 1)."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device).clamp_(1e-6, 1 - 1e-6)
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


class _GatedSoftmax(torch.autograd.Function):
    """weights = softmax(masked) * A with A the straight-through gate of ``sample_gates``, fused.

    Unfused, autograd keeps softmax, sigmoid(g + noise), the gate A and their product alive per head
    (plus the noise temporaries in the forward). Fused, it keeps softmax p, sigmoid(g + noise) and A as
    a bool tensor: one extra (B, H, Lq, Lk) float tensor over dense attention, plus a bool one.
    Gradients (A's value is exactly hard, its gradient that of s = sigmoid(g + noise)):
    d masked = softmax backward of (dW * A); d g = dW * p * s (1 - s).
    """

    @staticmethod
    def forward(ctx, masked: torch.Tensor, gate_logits: torch.Tensor, force_open: torch.Tensor | None):
        p = torch.softmax(masked, dim=-1)
        u = torch.rand_like(gate_logits).clamp_(1e-6, 1 - 1e-6)
        noisy = u.logit_().add_(gate_logits)  # g + Logistic(0, 1) noise, in place
        hard = noisy > 0
        if force_open is not None:
            hard |= force_open
        soft = noisy.sigmoid_()
        if force_open is not None:
            soft.masked_fill_(force_open.expand_as(soft), 0.0)  # forced edges: no gradient to g (as torch.where)
        ctx.save_for_backward(p, soft, hard)
        return p * hard

    @staticmethod
    def backward(ctx, grad_w: torch.Tensor):
        p, soft, hard = ctx.saved_tensors
        gp = grad_w * hard  # gradient reaching the softmax output
        grad_masked = p * (gp - (gp * p).sum(dim=-1, keepdim=True))
        grad_g = grad_w * p * soft * (1 - soft)
        return grad_masked, grad_g, None


def gated_softmax(
    masked: torch.Tensor, gate_logits: torch.Tensor, force_open: torch.Tensor | None = None
) -> torch.Tensor:
    """Training forward of gated attention weights, ``softmax(masked) * sample_gates(g, stochastic=True)``
    (``force_open``: bool edges whose gate is 1 regardless), with the memory of one extra NxN per head."""
    return _GatedSoftmax.apply(masked, gate_logits, force_open)


def expected_open_fraction(gate_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """C_attn = mean sigmoid(g) over valid edges: the expected fraction of open edges (differentiable).

    ``valid`` is broadcast, never expanded to the logits' shape (it is (B, 1, Lq, Lk) for all heads).
    """
    v = valid.to(gate_logits.dtype)
    n = v.sum() * (gate_logits.numel() / v.numel())  # each entry of v stands for this many edges
    return (torch.sigmoid(gate_logits) * v).sum() / n.clamp_min(1.0)


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
    """Per-example logit threshold t, shape (B, 1, 1, 1), such that each example's mean number of kept
    edges per valid query row (over all its heads and rows) is as close to ``budget`` as it can be
    without exceeding it.

    Bisection on t (METHOD section 4: a Lagrangian relaxation to a budget, made concrete), run for every
    example at once and independently: an example's threshold, hence its mask and its output, does not
    depend on the other examples of the batch (nor on their padding). Each row keeps its strongest edge
    regardless, so the count is monotone in t and never below 1 per row: a budget below 1 is not
    reachable (the threshold then keeps only the strongest edges). An example with fewer valid edges per
    row than ``budget`` keeps all of them.
    """
    v = valid.expand_as(masked_scores)
    b = masked_scores.shape[0]
    n_rows = v.any(dim=-1).flatten(1).sum(dim=-1)  # (B,) valid query rows of each example, all heads
    target = budget * n_rows.to(torch.float64)  # kept edges allowed per example
    strongest = strongest_edge(masked_scores) & v
    inf = torch.tensor(float("inf"), dtype=masked_scores.dtype, device=masked_scores.device)
    lo_all = torch.where(v, masked_scores, inf).flatten(1).amin(dim=-1)
    hi_all = torch.where(v, masked_scores, -inf).flatten(1).amax(dim=-1)
    has_edges = n_rows > 0
    zero = torch.zeros_like(lo_all)
    # count(lo) = every valid edge, count(hi) = one per row; an example without valid edges keeps none anyway
    lo = torch.where(has_edges, lo_all - 1.0, zero).view(b, 1, 1, 1)
    hi = torch.where(has_edges, hi_all + 1.0, zero).view(b, 1, 1, 1)

    def kept(t: torch.Tensor) -> torch.Tensor:  # (B,) kept edges of each example at its threshold
        return (((masked_scores >= t) & v) | strongest).flatten(1).sum(dim=-1)

    for _ in range(iters):
        mid = (lo + hi) / 2
        over = (kept(mid).to(torch.float64) > target).view(b, 1, 1, 1)
        lo = torch.where(over, mid, lo)
        hi = torch.where(over, hi, mid)
    return hi


def budget_keep(masked_scores: torch.Tensor, valid: torch.Tensor, budget: float) -> torch.Tensor:
    """Bool mask of edges kept under each example's budget threshold (plus each row's strongest edge)."""
    t = budget_threshold(masked_scores, valid, budget)
    return ((masked_scores >= t) | strongest_edge(masked_scores)) & valid
