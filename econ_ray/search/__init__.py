"""Multi-objective search: Ray Tune + a constrained Optuna searcher, trials on Ray Train + DeepSpeed,
the Pareto set and its hypervolume.

The pure Pareto math is imported here; everything that pulls in Ray, Optuna or torch is imported on
first use (a trial's processes import ``econ_ray.search.trial`` and must stay light).
"""

from importlib import import_module
from typing import Any

from econ_ray.search.pareto import TrialPoint, dominates, hypervolume, hypervolume_history, pareto_front

_LAZY = {
    "run_search": "econ_ray.search.driver",
    "SearchOutcome": "econ_ray.search.driver",
    "check_run": "econ_ray.search.preflight",
    "check_search": "econ_ray.search.preflight",
    "RunFacts": "econ_ray.search.preflight",
    "SearchFacts": "econ_ray.search.preflight",
    "TrialRecord": "econ_ray.search.records",
    "load_records": "econ_ray.search.records",
    "read_trials": "econ_ray.search.records",
    "points_from": "econ_ray.search.records",
    "SearchError": "econ_ray.search.results",
    "chance_of": "econ_ray.search.results",
    "model_dir": "econ_ray.search.results",
    "summarise": "econ_ray.search.results",
    "trial_config": "econ_ray.search.space",
    "trial_params": "econ_ray.search.space",
}

__all__ = ["TrialPoint", "dominates", "hypervolume", "hypervolume_history", "pareto_front", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'econ_ray.search' has no attribute {name!r}")
