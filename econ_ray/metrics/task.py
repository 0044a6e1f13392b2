"""Task-quality metrics: accuracy, MCC, Pearson, Spearman and perplexity.

Pure functions on 1-D sequences (numpy arrays, python lists or torch tensors). All return python
floats. Correlations of a constant input are undefined; they return 0.0 (no linear/monotone
relation can be claimed), the same convention as the MCC with a zero denominator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np


def _as_array(x: Any) -> np.ndarray:
    """numpy view of ``x``; torch tensors are detached and moved to CPU first.

    ``np.asarray`` alone fails on tensors that require grad, live on a GPU or are bfloat16.
    """
    if hasattr(x, "detach"):
        t = x.detach().cpu()
        if t.is_floating_point():
            t = t.double()
        return t.numpy()
    return np.asarray(x)


def _pair(preds: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p, y = _as_array(preds).reshape(-1), _as_array(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"preds and labels differ in size: {p.size} vs {y.size}")
    if p.size == 0:
        raise ValueError("metrics of an empty set are undefined")
    return p, y


def accuracy(preds: Any, labels: Any) -> float:
    """Fraction of positions where ``preds == labels``, in [0, 1]."""
    p, y = _pair(preds, labels)
    return float(np.mean(p == y))


def _pearson_arrays(x: np.ndarray, y: np.ndarray) -> float:
    x = x.astype(np.float64) - x.mean(dtype=np.float64)
    y = y.astype(np.float64) - y.mean(dtype=np.float64)
    denom = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    if denom == 0.0:
        return 0.0
    # Rounding can push |r| a hair past 1 for perfectly correlated data.
    return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0))


def pearson(preds: Any, labels: Any) -> float:
    """Pearson correlation coefficient in [-1, 1]; 0.0 when either input is constant."""
    p, y = _pair(preds, labels)
    return _pearson_arrays(p, y)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; tied values share the mean of the ranks they occupy."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    before = np.cumsum(counts) - counts  # values strictly smaller than each distinct value
    avg = before + (counts + 1) / 2.0
    return avg[inverse.reshape(-1)]


def spearman(preds: Any, labels: Any) -> float:
    """Spearman rank correlation: Pearson of the average ranks (ties share their mean rank).

    In [-1, 1]; 0.0 when either input is constant.
    """
    p, y = _pair(preds, labels)
    return _pearson_arrays(_average_ranks(p), _average_ranks(y))


def matthews_corrcoef(preds: Any, labels: Any) -> float:
    """Matthews correlation coefficient, multiclass form (Gorodkin 2004), in [-1, 1].

    With confusion matrix C over the classes seen in either input, ``c = trace(C)``,
    ``s = sum(C)``, ``t_k`` = true count and ``p_k`` = predicted count of class k::

        MCC = (c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) * (s^2 - sum_k t_k^2))

    For two classes this equals ``(TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``.
    Returns 0.0 when the denominator is 0 (a constant prediction or a single true class).
    """
    p, y = _pair(preds, labels)
    _, idx = np.unique(np.concatenate([y, p]), return_inverse=True)
    idx = idx.reshape(-1)
    n = y.size
    k = int(idx.max()) + 1
    conf = np.zeros((k, k), dtype=np.float64)
    np.add.at(conf, (idx[:n], idx[n:]), 1.0)  # rows: true class, columns: predicted class
    t = conf.sum(axis=1)
    q = conf.sum(axis=0)
    c = float(np.trace(conf))
    s = float(n)
    cov_yp = c * s - float(np.dot(q, t))
    cov_pp = s * s - float(np.dot(q, q))
    cov_yy = s * s - float(np.dot(t, t))
    denom = math.sqrt(cov_pp * cov_yy)
    if denom == 0.0:
        return 0.0
    return float(cov_yp / denom)


def perplexity(mean_ce_nats: float) -> float:
    """Perplexity ``exp(mean CE)`` from the mean cross-entropy in nats per token."""
    return float(math.exp(float(mean_ce_nats)))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
    "perplexity": perplexity,
}

_LOWER_IS_BETTER = frozenset({"perplexity"})

TASK_KINDS = ("classification", "regression", "lm")


def higher_is_better(metric_name: str) -> bool:
    """Whether a larger value of ``metric_name`` is better (False only for perplexity)."""
    if metric_name not in METRICS:
        raise KeyError(f"unknown metric {metric_name!r}; known: {sorted(METRICS)}")
    return metric_name not in _LOWER_IS_BETTER


def compute_task_metrics(
    kind: str,
    *,
    logits: Any = None,
    preds: Any = None,
    labels: Any = None,
    mean_ce: float | None = None,
) -> dict[str, float]:
    """Metrics of one evaluation, chosen by task ``kind``.

    * ``"classification"``: ``{"accuracy", "mcc"}``; give ``logits`` (``(N, C)``, argmax over the
      last axis) or ``preds`` (class ids), and ``labels``.
    * ``"regression"``: ``{"pearson", "spearman"}``; give ``preds`` or ``logits`` of shape ``(N,)``
      or ``(N, 1)``, and ``labels``.
    * ``"lm"``: ``{"perplexity"}`` from ``mean_ce`` (mean cross-entropy, nats per token).
    """
    if kind == "lm":
        if mean_ce is None:
            raise ValueError("kind 'lm' needs mean_ce (mean cross-entropy in nats per token)")
        return {"perplexity": perplexity(mean_ce)}
    if kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {TASK_KINDS}")
    if labels is None:
        raise ValueError(f"kind {kind!r} needs labels")
    if (logits is None) == (preds is None):
        raise ValueError(f"kind {kind!r} needs exactly one of logits or preds")
    if kind == "classification":
        p = _as_array(logits).argmax(axis=-1) if logits is not None else _as_array(preds)
        return {"accuracy": accuracy(p, labels), "mcc": matthews_corrcoef(p, labels)}
    p = _as_array(logits if logits is not None else preds)
    if p.ndim == 2 and p.shape[-1] == 1:
        p = p[:, 0]
    return {"pearson": pearson(p, labels), "spearman": spearman(p, labels)}
