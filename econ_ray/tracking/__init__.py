"""MLflow tracking (parent run per search, child run per trial) and the model registry.

``econ_ray.tracking.store`` does not import mlflow until a tracker is made; the registry names
(which subclass ``mlflow.pyfunc.PythonModel``) are imported on first use.
"""

from econ_ray.tracking.store import (
    MlflowTracker,
    TrackingError,
    check_tracking_uri,
    finite_metrics,
    safe_params,
    tracking_uri,
)

_REGISTRY = (
    "EconPyfunc",
    "best_version",
    "download_registered",
    "find_best",
    "list_versions",
    "logged_model_id",
    "load_registered",
    "predict_texts",
    "register_model",
    "resolve_version",
)

__all__ = [
    "MlflowTracker",
    "TrackingError",
    "check_tracking_uri",
    "finite_metrics",
    "safe_params",
    "tracking_uri",
    *_REGISTRY,
]


def __getattr__(name: str):
    if name in _REGISTRY:
        from econ_ray.tracking import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'econ_ray.tracking' has no attribute {name!r}")
