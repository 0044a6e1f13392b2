"""Training: one run (dense phase, priced or constrained phase, final evaluation) and its evaluation."""

from econ_ray.training.engine import Engine, TorchEngine
from econ_ray.training.evaluate import evaluate
from econ_ray.training.loop import DivergenceError, Prepared, RunHooks, RunResult, prepare, train_dense, train_run

__all__ = [
    "DivergenceError",
    "Engine",
    "Prepared",
    "RunHooks",
    "RunResult",
    "TorchEngine",
    "evaluate",
    "prepare",
    "train_dense",
    "train_run",
]
