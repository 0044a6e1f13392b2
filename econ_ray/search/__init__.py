"""Multi-objective search: Ray Tune + a constrained Optuna searcher, trials on Ray Train + DeepSpeed,
the Pareto set and its hypervolume."""

from econ_ray.search.pareto import TrialPoint, dominates, hypervolume, hypervolume_history, pareto_front

__all__ = ["TrialPoint", "dominates", "hypervolume", "hypervolume_history", "pareto_front", "run_search"]


def __getattr__(name: str):
    if name == "run_search":  # imports Ray; only on use
        from econ_ray.search.driver import run_search

        return run_search
    raise AttributeError(name)
