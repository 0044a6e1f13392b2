"""The functions of the public API that are not a re-export: loading a model from wherever it lives."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_model(source: str | Path, *, uri: str | None = None, device: str = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """``(model, tokenizer, meta)`` of an econ-ray model folder (``train --save``, ``registry load``, a
    trial's checkpoint) or of a registered version, ``"NAME@ALIAS"`` / ``"NAME/VERSION"`` (also
    ``models:/...``) in the MLflow registry at ``uri`` (default: ``$MLFLOW_TRACKING_URI`` or
    ``./mlflow.db``). The model comes back with econ-ray attention installed and its masks applied, so
    it reproduces its logged metric; ``meta`` holds the task, the config and the run's summary."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        from econ_ray.modeling import load_model as load_folder

        return load_folder(folder, device=device)
    from econ_ray.tracking.registry import load_registered

    return load_registered(str(source), uri=uri, device=device)
