"""What an experiment verb works on: a search-space file (its dense model is trained first) or a saved
model folder, turned into a model with econ-ray attention installed, its runtime and its data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from econ_ray.attention.runtime import EconRuntime, runtime_of
from econ_ray.data import EncodedSplit, TaskSpec


@dataclass
class Target:
    """A trained model and its data. ``calibration`` is data the reported metric is not measured on
    (held-out training data, else training data): scores of data-driven pruning are fitted there."""

    model: nn.Module
    runtime: EconRuntime
    validation: EncodedSplit
    calibration: EncodedSplit
    task: TaskSpec
    seq_len: int
    tokenizer: Any
    config: dict[str, Any]


def load_target(target: str, model_dir: str | None = None, overrides: dict[str, Any] | None = None) -> Target:
    """A saved model folder (``model_dir`` or ``target``) as saved; else the file's dense model, trained now."""
    from econ_ray.config import load_config
    from econ_ray.data import encode_split, load_task_for

    folder = Path(model_dir or target)
    if folder.is_dir():
        from econ_ray.config import RunConfig
        from econ_ray.modeling import load_model

        model, tok, meta = load_model(folder)
        cfg = RunConfig.model_validate({k: v for k, v in meta["config"].items() if k in RunConfig.model_fields})
        d = cfg.data
        splits = load_task_for(d, seed=cfg.training.seed)
        calib = splits.heldout if splits.heldout else splits.train
        return Target(
            model,
            runtime_of(model),
            encode_split(splits.validation, splits.task, tok, d.max_length, packing=d.packing),
            encode_split(calib, splits.task, tok, d.max_length, packing=d.packing),
            splits.task,
            d.max_length,
            tok,
            cfg.model_dump(),
        )
    from econ_ray.training import train_run

    cfg = load_config(
        target,
        {
            "attention.mode": "dense",
            "attention.k": None,
            "attention.budget": None,
            "objective.kind": "penalised",
            "objective.lam": 0.0,
            "objective.tau": None,
            "objective.tau_rel": None,
            **(overrides or {}),
        },
    )
    res = train_run(cfg)  # the dense model of the file: dense phase + dense main phase
    p = res.prepared
    assert p is not None  # train_run without prepared= returns what it prepared
    encoded = p.heldout if len(p.heldout) else p.train
    return Target(p.model, p.runtime, p.validation, encoded, p.task, cfg.data.max_length, p.tokenizer, cfg.model_dump())
