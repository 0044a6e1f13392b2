"""Metrics: allocation of attention (Gini, entropy, density) and task metrics."""

from econ_ray.metrics.allocation import density, entropy_bits_rows, gini_rows
from econ_ray.metrics.task import (
    accuracy,
    compute_task_metrics,
    higher_is_better,
    matthews_corrcoef,
    pearson,
    perplexity,
    spearman,
)

__all__ = [
    "accuracy",
    "compute_task_metrics",
    "density",
    "entropy_bits_rows",
    "gini_rows",
    "higher_is_better",
    "matthews_corrcoef",
    "pearson",
    "perplexity",
    "spearman",
]
