"""Task circuits of a causal LM by attribution patching (seed 003's circuit claim; METHOD section 7).

A task is a set of clean/corrupted input pairs of one length (:class:`Pairs`) and a metric: the mean
log-probability of the clean continuation at the scored positions. *Patching* a unit runs the clean
input with that unit's output replaced by its value in the corrupted run. A circuit is a set of units
kept clean while every other unit is patched; it recovers

    recovery = (M(circuit) - M(corrupted)) / (M(clean) - M(corrupted))

of the task metric. Units are of two kinds, ranked separately:

- **components**: the attention heads (their output per token before the output projection) and the
  MLPs of every layer;
- **edges**: single attention edges (layer, head, query position i, key position j): the term
  ``a_ij v_j`` of head h's output at i. Patching an edge swaps that term for the corrupted run's
  ``a'_ij v'_j``; the MLPs, embeddings and other terms are computed from the patched run as usual.
  Only causal-valid edges that are open in the clean or the corrupted run count (every one of a dense
  model; a gated model's closed edges carry nothing in either run).

**Attribution patching** (the linear approximation of activation patching; Nanda 2023, Syed et al. 2023
for edges) scores every unit at once from one clean forward and backward and one corrupted forward:
the gradient of the metric with respect to the unit's output times the change patching makes to it,
``grad . (x_corrupt - x_clean)``. Units are ranked by its absolute value, and the circuit is the
smallest top-k that recovers the target share *by real patching* (:func:`smallest_top_k`: a doubling
search, then a bisection, each point a patched forward), so the reported recovery is measured, not
estimated.

Tasks (:func:`pairs_for`): ``addition`` (the built-in task's text, ``"4 7 + 6 8 = 1 1 5"``; the corrupted
input swaps the first operand for another two-digit number, the answer tokens stay the clean ones;
scored: the three answer digits) and ``induction`` (a random token sequence repeated; the corrupted
input's first half is another random sequence, so the second half cannot be copied; scored: the second
half after its first token) and ``brackets`` (real text: a window of held-out corpus text that ends just
before a closing bracket whose opening bracket is inside the window; the corrupted window has that
opening token replaced by the same token without its bracket, so nothing is left to close; scored: the
closing token).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from econ_ray.attention.runtime import EconRuntime

TASKS = ("addition", "induction", "brackets")
# bracket kinds of the brackets task: (opening character, closing character)
BRACKETS = (("(", ")"), ("[", "]"))


@dataclass(frozen=True)
class Pairs:
    """Clean and corrupted inputs of one length, (N, L) token ids, and the scored next-token targets,
    (N, L) with -100 where nothing is scored (position t's target is the token at t + 1)."""

    clean: torch.Tensor
    corrupt: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.clean.shape != self.corrupt.shape or self.clean.shape != self.targets.shape:
            raise ValueError("clean, corrupt and targets must have one shape (N, L)")


def _bos(tokenizer: Any) -> list[int]:
    return [int(tokenizer.bos_token_id)] if tokenizer.bos_token_id is not None else []


def _ids(tokenizer: Any, text: str) -> list[int]:
    return _bos(tokenizer) + list(tokenizer(text, add_special_tokens=False)["input_ids"])


def addition_pairs(tokenizer: Any, n: int, seed: int) -> Pairs:
    """``n`` pairs ``a + b = a+b`` / ``a' + b = a+b`` with two-digit operands and a three-digit sum (one
    length for all: BOS + 9 tokens as the built-in task encodes them), ``a' != a``, ``a' + b >= 100``."""
    from econ_ray.data.builtin import addition_text

    rng = np.random.default_rng(seed)
    clean: list[list[int]] = []
    corrupt: list[list[int]] = []
    targets: list[list[int]] = []
    while len(clean) < n:
        a, b, a2 = (int(x) for x in rng.integers(10, 100, size=3))
        if a + b < 100 or a2 + b < 100 or a2 == a:
            continue
        answer = " ".join(str(a + b))
        c = _ids(tokenizer, addition_text(a, b))
        x = _ids(tokenizer, f"{' '.join(str(a2))} + {' '.join(str(b))} = {answer}")
        if len(c) != len(x):
            raise ValueError("the tokenizer splits the clean and corrupted additions differently")
        t = [-100] * len(c)
        for pos in range(len(c) - 3, len(c)):  # the three answer digits, predicted from the token before
            t[pos - 1] = c[pos]
        clean.append(c)
        corrupt.append(x)
        targets.append(t)
    return Pairs(torch.tensor(clean), torch.tensor(corrupt), torch.tensor(targets))


def induction_pairs(tokenizer: Any, n: int, seed: int, half: int = 16) -> Pairs:
    """``n`` pairs ``BOS x x`` / ``BOS y x`` of random ordinary tokens (``half`` each): in the clean input the
    second ``x`` can be copied from the first, in the corrupted one it cannot. Scored: the second half's
    tokens after its first."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    vocab = np.array([i for i in range(len(tokenizer)) if i not in special])
    if len(vocab) < 2 * half:
        raise ValueError(f"induction needs at least {2 * half} ordinary tokens; the tokenizer has {len(vocab)}")
    rng = np.random.default_rng(seed)
    bos = _bos(tokenizer)
    clean: list[list[int]] = []
    corrupt: list[list[int]] = []
    targets: list[list[int]] = []
    for _ in range(n):
        x = rng.choice(vocab, size=half, replace=False).tolist()
        y = rng.choice(vocab, size=half, replace=False).tolist()
        c, k = bos + x + x, bos + y + x
        t = [-100] * len(c)
        start = len(bos) + half  # the second x begins here
        for pos in range(start + 1, len(c)):
            t[pos - 1] = c[pos]
        clean.append(c)
        corrupt.append(k)
        targets.append(t)
    return Pairs(torch.tensor(clean), torch.tensor(corrupt), torch.tensor(targets))


def bracket_pairs(tokenizer: Any, texts: Sequence[str], n: int, seed: int, window: int = 24) -> Pairs:
    """Up to ``n`` pairs from real text: every ``window``-token span of ``texts`` that ends just before a
    token starting with a closing bracket whose nearest bracket-bearing token before it, inside the span
    and at least two tokens back, opens that kind (more openings than closings in its text). The corrupted
    span has the opening token replaced by the token spelling the same text without the bracket (spans
    whose opening token has no such single token are skipped), so the bracket to close is gone and
    nothing else moves. Scored: the closing token. Sampled with ``seed`` when more than ``n`` are found."""
    vocab = len(tokenizer)
    text = [tokenizer.convert_tokens_to_string([t]) for t in tokenizer.convert_ids_to_tokens(list(range(vocab)))]
    single: dict[str, int] = {}
    for i, t in enumerate(text):
        single.setdefault(t, i)
    bracketed = {i for i, t in enumerate(text) if any(ch in t for pair in BRACKETS for ch in pair)}
    opens = {o: {i for i in bracketed if text[i].count(o) > text[i].count(c)} for o, c in BRACKETS}
    closes = {c: {i for i in bracketed if text[i].startswith(c) and o not in text[i]} for o, c in BRACKETS}
    found: list[tuple[list[int], list[int], int]] = []
    for para in texts:
        ids = list(tokenizer(para, add_special_tokens=False)["input_ids"])
        for q in range(window, len(ids)):
            kind = next((k for k, (o, c) in enumerate(BRACKETS) if ids[q] in closes[c]), None)
            if kind is None:
                continue
            o, c = BRACKETS[kind]
            j = q - 1
            while j > q - window and ids[j] not in bracketed:
                j -= 1
            if j <= q - window or q - j < 2 or ids[j] not in opens[o]:
                continue
            swap = single.get(text[ids[j]].replace(o, "", 1))
            if swap is None or swap in bracketed:
                continue
            clean = ids[q - window : q]
            corrupt = list(clean)
            corrupt[j - (q - window)] = swap
            found.append((clean, corrupt, ids[q]))
    if len(found) < 2:
        raise ValueError(
            f"brackets: {len(found)} bracket spans of {window} tokens found in {len(texts)} paragraphs; "
            "expected at least 2 (a tokenizer that keeps brackets in their own or word tokens, and text with brackets)"
        )
    rng = np.random.default_rng(seed)
    if len(found) > n:
        found = [found[i] for i in sorted(rng.choice(len(found), size=n, replace=False))]
    targets = [[-100] * (window - 1) + [closing] for _, _, closing in found]
    return Pairs(torch.tensor([c for c, _, _ in found]), torch.tensor([k for _, k, _ in found]), torch.tensor(targets))


def heldout_texts(meta: dict[str, Any]) -> list[str]:
    """Real text a saved model was not trained on, for the brackets task: the validation paragraphs of the
    built-in corpus it was trained on (``builtin:pydoc-corpus`` or ``builtin:pypi-docs-corpus``, its own
    ``n_validation``), else those of ``pydoc-corpus`` (its default split)."""
    from econ_ray.data.builtin import BUILTIN_TASKS

    data = (meta.get("config") or {}).get("data") or {}
    source = data.get("source")
    if source == "builtin:pypi-docs-corpus":
        from econ_ray.data.pypi_docs_corpus import build

        name, options = "pypi-docs-corpus", data.get("builtin")
    else:
        from econ_ray.data.pydoc_corpus import build

        name, options = "pydoc-corpus", data.get("builtin") if source == "builtin:pydoc-corpus" else None
    n_val = BUILTIN_TASKS[name].options(options or {})["n_validation"]
    return list(build()[:n_val])


def pairs_for(task: str, tokenizer: Any, n: int, seed: int, texts: Sequence[str] | None = None) -> Pairs:
    """The clean/corrupted pairs of ``task``; ``texts`` (real text the model was not trained on) for
    ``brackets``."""
    if task == "addition":
        return addition_pairs(tokenizer, n, seed)
    if task == "induction":
        return induction_pairs(tokenizer, n, seed)
    if task == "brackets":
        if not texts:
            raise ValueError("brackets: needs held-out text to cut the spans from")
        return bracket_pairs(tokenizer, texts, n, seed)
    raise ValueError(f"--task: expected one of {', '.join(TASKS)}, got {task!r}")


def task_metric(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean log-probability of the scored targets (higher is better), over every scored position."""
    scored = targets != -100
    logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # fp64 stays
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked[scored].mean()


def recovery(value: float, clean: float, corrupt: float) -> float:
    """The share of the clean-minus-corrupted gap that ``value`` recovers (1 = clean, 0 = corrupted)."""
    gap = clean - corrupt
    return (value - corrupt) / gap if gap != 0 else float("nan")


# ---- the model's units ----------------------------------------------------------------------------


def _runtime(model: nn.Module) -> EconRuntime:
    rt = getattr(model, "econ_runtime", None)
    if rt is None:
        raise ValueError("the model has no econ-ray attention installed (load it with econ_ray.load_model)")
    return cast(EconRuntime, rt)


def _mlps(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(getattr(model, "transformer", None), "h", None)
    if blocks is None:
        raise ValueError("circuits need a GPT-2-family causal LM (model.transformer.h)")
    return [block.mlp for block in blocks]


@dataclass
class Run:
    """One forward's units: per layer the attention weights (B, H, L, L), values (B, H, L, dh), head
    outputs (B, H, L, dh) and MLP outputs (B, L, D), and the metric."""

    metric: torch.Tensor
    weights: dict[int, torch.Tensor]
    values: dict[int, torch.Tensor]
    heads: dict[int, torch.Tensor]
    mlps: dict[int, torch.Tensor]


def forward(
    model: nn.Module,
    ids: torch.Tensor,
    targets: torch.Tensor,
    *,
    corrupt: Run | None = None,
    keep_edges: dict[int, torch.Tensor] | None = None,
    keep_heads: torch.Tensor | None = None,
    keep_mlps: torch.Tensor | None = None,
    grad: bool = False,
) -> Run:
    """Run ``ids``; with ``corrupt`` given, units not kept take the corrupted run's values: edges where
    ``keep_edges[layer]`` (H, L, L) is False, heads where ``keep_heads`` (layers, H) is False, MLPs where
    ``keep_mlps`` (layers,) is False (None keeps every unit of that kind). With ``grad`` the head and MLP
    outputs keep their gradients for :func:`attribute`."""
    rt = _runtime(model)
    weights: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}
    heads: dict[int, torch.Tensor] = {}
    mlps: dict[int, torch.Tensor] = {}

    def attention(layer: int, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        weights[layer], values[layer] = w.detach(), v.detach()
        if corrupt is not None and keep_edges is not None:
            keep = keep_edges[layer].to(w.dtype)  # (H, L, L), broadcast over the batch
            out = torch.matmul(w * keep, v) + torch.matmul(corrupt.weights[layer] * (1 - keep), corrupt.values[layer])
        else:
            out = torch.matmul(w, v)
        if corrupt is not None and keep_heads is not None:
            kh = keep_heads[layer].to(out.dtype).view(1, -1, 1, 1)
            out = out * kh + corrupt.heads[layer] * (1 - kh)
        if grad:
            out.retain_grad()
        heads[layer] = out
        return out

    def mlp_hook(layer: int) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            if corrupt is not None and keep_mlps is not None and not bool(keep_mlps[layer]):
                out = corrupt.mlps[layer]
                if grad:
                    out = out.clone().requires_grad_(True)
            if grad:
                out.retain_grad()
            mlps[layer] = out
            return out

        return hook

    handles = [m.register_forward_hook(mlp_hook(i)) for i, m in enumerate(_mlps(model))]
    try:
        with rt.override(patch=attention), torch.set_grad_enabled(grad):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits  # pairs are never padded
            metric = task_metric(logits, targets)
    finally:
        for h in handles:
            h.remove()
    return Run(metric, weights, values, heads, mlps)


@dataclass
class Attribution:
    """Linear estimates of the metric change from patching each unit (corrupted minus clean)."""

    edges: torch.Tensor  # (layers, H, L, L), 0 off the counted edges
    counted: torch.Tensor  # (layers, H, L, L) bool: causal-valid edges open in either run
    heads: torch.Tensor  # (layers, H)
    mlps: torch.Tensor  # (layers,)
    clean: float
    corrupt: float


def edge_attribution(
    g: torch.Tensor, a: torch.Tensor, v: torch.Tensor, a2: torch.Tensor, v2: torch.Tensor
) -> torch.Tensor:
    """(H, Lq, Lk): ``sum_b g_i . (a2_ij v2_j - a_ij v_j)`` for the gradient ``g`` (B, H, Lq, dh) of the metric
    with respect to the heads' outputs, weights ``a``, ``a2`` (B, H, Lq, Lk) and values ``v``, ``v2``
    (B, H, Lk, dh) of the clean and the corrupted run."""
    return (a2 * torch.matmul(g, v2.transpose(-1, -2)) - a * torch.matmul(g, v.transpose(-1, -2))).sum(0)


def attribute(model: nn.Module, pairs: Pairs) -> tuple[Attribution, Run]:
    """Attribution patching: one clean forward and backward and one corrupted forward give every unit's
    ``grad . (x_corrupt - x_clean)`` (edges: ``g_i . (a'_ij v'_j - a_ij v_j)``, summed over the pairs, as
    the metric is a mean). Returns the attributions and the corrupted run (the values patching uses)."""
    corrupt = forward(model, pairs.corrupt, pairs.targets)
    clean = forward(model, pairs.clean, pairs.targets, grad=True)
    clean.metric.backward()
    n_layers = len(clean.heads)
    L = pairs.clean.shape[1]
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    edges, counted, heads, mlps = [], [], [], []
    with torch.no_grad():
        for layer in range(n_layers):
            g = clean.heads[layer].grad  # (B, H, L, dh)
            assert g is not None
            a, a2 = clean.weights[layer], corrupt.weights[layer]
            e = edge_attribution(g, a, clean.values[layer], a2, corrupt.values[layer])
            open_ = ((a != 0) | (a2 != 0)).any(0) & causal
            edges.append(torch.where(open_, e, torch.zeros_like(e)))
            counted.append(open_)
            heads.append((g * (corrupt.heads[layer] - clean.heads[layer].detach())).sum((0, 2, 3)))
            gm = clean.mlps[layer].grad
            assert gm is not None
            mlps.append((gm * (corrupt.mlps[layer] - clean.mlps[layer].detach())).sum())
    attr = Attribution(
        torch.stack(edges),
        torch.stack(counted),
        torch.stack(heads),
        torch.stack(mlps),
        clean=float(clean.metric.detach()),
        corrupt=float(corrupt.metric),
    )
    return attr, corrupt


def smallest_top_k(n: int, recovered: Callable[[int], float], target: float) -> tuple[int, float]:
    """The smallest k in 1..n whose top-k circuit ``recovered(k) >= target`` as the search finds it: k doubles
    until it recovers, then a bisection between the last k that did not and the first that did (exact for
    a recovery that grows with k; each probe is a real patched run). n (everything kept) recovers fully."""
    if n <= 0:
        raise ValueError("no units to choose from")
    lo, hi = 0, 1  # recovered(lo) < target (or lo = 0), recovered(hi) >= target when found
    values: dict[int, float] = {}
    while hi < n:
        values[hi] = recovered(hi)
        if values[hi] >= target:
            break
        lo, hi = hi, min(2 * hi, n)
    if hi not in values:
        values[hi] = recovered(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        values[mid] = recovered(mid)
        if values[mid] >= target:
            hi = mid
        else:
            lo = mid
    return hi, values[hi]


def _top_mask(scores: torch.Tensor, counted: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k counted entries of largest |score|."""
    flat = torch.where(counted, scores.abs(), torch.full_like(scores, -1.0)).flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.topk(flat, k).indices] = True
    return mask.view_as(scores) & counted


@dataclass
class Circuit:
    """The result: how many units recover the target share, verified by real patching."""

    components_90: int
    components_recovered: float
    total_components: int
    edges_90: int
    metric_recovered: float  # the edge circuit's recovery by real patching
    total_edges: int
    metric_clean: float
    metric_corrupt: float
    target: float
    components: list[dict[str, Any]]  # the component circuit, by |attribution|
    edges: list[dict[str, Any]]  # the first edges of the edge circuit, by |attribution|
    estimate_vs_patching: dict[str, float]  # how well the linear estimate ranked and sized the units

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("components", "edges")}


def find_circuit(model: nn.Module, pairs: Pairs, *, target: float = 0.9, list_edges: int = 50) -> Circuit:
    """Attribute, then the smallest component circuit and the smallest edge circuit that recover ``target``
    by real patching (edges: MLPs and heads otherwise clean; components: every edge clean)."""
    if not 0 < target <= 1:
        raise ValueError(f"--target: expected a share in (0, 1], got {target}")
    attr, corrupt = attribute(model, pairs)
    if not attr.clean > attr.corrupt:
        raise ValueError(
            f"the corrupted inputs do not lower the task metric (clean {attr.clean:.4g}, corrupted "
            f"{attr.corrupt:.4g}): the model has not learned the task, so there is no circuit to find"
        )
    n_layers, n_heads = attr.heads.shape

    def measure(**keep: Any) -> float:
        with torch.no_grad():
            run = forward(model, pairs.clean, pairs.targets, corrupt=corrupt, **keep)
        return recovery(float(run.metric), attr.clean, attr.corrupt)

    # components: heads and MLPs in one ranking
    comp_scores = torch.cat([attr.heads.flatten(), attr.mlps])
    comp_counted = torch.ones_like(comp_scores, dtype=torch.bool)

    def comp_keep(k: int) -> dict[str, torch.Tensor]:
        m = _top_mask(comp_scores, comp_counted, k)
        return {"keep_heads": m[: n_layers * n_heads].view(n_layers, n_heads), "keep_mlps": m[n_layers * n_heads :]}

    n_comp = comp_scores.numel()
    k_comp, r_comp = smallest_top_k(n_comp, lambda k: measure(**comp_keep(k)), target)

    total_edges = int(attr.counted.sum())

    def edge_keep(k: int) -> dict[str, Any]:
        m = _top_mask(attr.edges, attr.counted, k)
        return {"keep_edges": {layer: m[layer] for layer in range(n_layers)}}

    k_edge, r_edge = smallest_top_k(total_edges, lambda k: measure(**edge_keep(k)), target)

    components = []
    for idx in torch.argsort(comp_scores.abs(), descending=True)[:k_comp].tolist():
        if idx < n_layers * n_heads:
            layer, head = divmod(idx, n_heads)
            components.append({"unit": f"L{layer}H{head}", "attribution": float(comp_scores[idx])})
        else:
            components.append({"unit": f"L{idx - n_layers * n_heads}.mlp", "attribution": float(comp_scores[idx])})
    flat = torch.where(attr.counted, attr.edges.abs(), torch.full_like(attr.edges, -1.0)).flatten()
    edges = []
    for idx in torch.topk(flat, min(k_edge, list_edges)).indices.tolist():
        layer, rest = divmod(idx, n_heads * attr.edges.shape[2] ** 2)
        head, rest = divmod(rest, attr.edges.shape[2] ** 2)
        qi, kj = divmod(rest, attr.edges.shape[2])
        edges.append(
            {"layer": layer, "head": head, "query": qi, "key": kj, "attribution": float(attr.edges.flatten()[idx])}
        )
    return Circuit(
        components_90=k_comp,
        components_recovered=r_comp,
        total_components=n_comp,
        edges_90=k_edge,
        metric_recovered=r_edge,
        total_edges=total_edges,
        metric_clean=attr.clean,
        metric_corrupt=attr.corrupt,
        target=target,
        components=components,
        edges=edges,
        estimate_vs_patching=_estimate_check(attr, measure),
    )


def _estimate_check(attr: Attribution, measure: Callable[..., float]) -> dict[str, float]:
    """The linear estimate against real patching, one component at a time: each component patched alone
    (the rest clean), its real metric change beside its attribution; their correlation."""
    n_layers, n_heads = attr.heads.shape
    est, real = [], []
    for idx in range(n_layers * n_heads + n_layers):
        keep_heads = torch.ones(n_layers, n_heads, dtype=torch.bool)
        keep_mlps = torch.ones(n_layers, dtype=torch.bool)
        if idx < n_layers * n_heads:
            keep_heads.view(-1)[idx] = False
            est.append(float(attr.heads.flatten()[idx]))
        else:
            keep_mlps[idx - n_layers * n_heads] = False
            est.append(float(attr.mlps[idx - n_layers * n_heads]))
        r = measure(keep_heads=keep_heads, keep_mlps=keep_mlps)
        real.append((r - 1.0) * (attr.clean - attr.corrupt))  # the metric change patching made
    e_arr, r_arr = np.array(est), np.array(real)
    corr = float(np.corrcoef(e_arr, r_arr)[0, 1]) if e_arr.std() > 0 and r_arr.std() > 0 else math.nan
    return {"pearson_components": corr, "max_abs_error": float(np.abs(e_arr - r_arr).max()) if len(est) else math.nan}
