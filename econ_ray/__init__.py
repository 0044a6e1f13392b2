"""econ-ray: accuracy-vs-compute Pareto search for transformers.

The public API, for use from Python (the ``econ-ray`` CLI calls the same functions)::

    import econ_ray

    cfg = econ_ray.load_config("search_spaces/quickstart.yaml", {"objective.target_ratio": 0.3})
    result = econ_ray.train_run(cfg)                  # one training run; result.summary has every metric
    out = econ_ray.run_search(cfg, config_path="search_spaces/quickstart.yaml")  # the Pareto search
    best = econ_ray.best_version(out.registered_model, max_gflops=0.01)          # lookup by budget
    model, tokenizer, meta = econ_ray.load_model(f"{out.registered_model}@rank-1")  # or a model folder

Names are imported on first use, so ``import econ_ray`` pulls in neither torch nor Ray.
"""

from importlib import import_module
from typing import Any

from econ_ray._version import __version__

_API = {
    # configuration
    "load_config": "econ_ray.config",
    "ConfigError": "econ_ray.config",
    "RunConfig": "econ_ray.config",
    "SearchSpaceFile": "econ_ray.config",
    # one run
    "train_run": "econ_ray.training",
    "RunResult": "econ_ray.training",
    # the search
    "run_search": "econ_ray.search",
    "check_search": "econ_ray.search",
    "SearchOutcome": "econ_ray.search",
    # FLOPs (METHOD section 6)
    "ARCHS": "econ_ray.compute",
    "ArchShape": "econ_ray.compute",
    "dense_flops": "econ_ray.compute",
    "effective_flops": "econ_ray.compute",
    "count_flops": "econ_ray.compute",
    # models: a folder or the registry
    "load_model": "econ_ray._api",
    "best_version": "econ_ray.tracking",
    "list_versions": "econ_ray.tracking",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'econ_ray' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
