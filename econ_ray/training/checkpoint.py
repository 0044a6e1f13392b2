"""Training state of a run in the middle of a phase, saved so a restarted worker goes on from it.

A Ray Train worker that dies (killed, out of memory, node lost) is restarted by Ray Train
(``FailureConfig.max_failures``) with the latest reported checkpoint; ``train_run`` then resumes
at the saved phase and step instead of starting over. A state folder holds:

    train_state.json            phase, step, histories, best score, CE_dense, restarts (JSON)
    model.safetensors           the model's weights, gate biases included (rank 0)
    best_feasible.safetensors   the sparsest snapshot that met the ceiling (constrained runs, rank 0)
    engine_rank{r}.pt           rank r's optimiser and LR-schedule state (tensors and plain values)
    rng_rank{r}.pt              rank r's torch, numpy and Python RNG states
    controller.pt               the Lagrange multiplier and its nuPI state (constrained runs, rank 0)

Nothing is ever unpickled: tensors go through safetensors, and the ``.pt`` files hold only
tensors, numbers, strings, lists and dicts, loaded with ``torch.load(weights_only=True)``. Every file
is written to a temporary name and moved into place with ``os.replace``, so a folder never holds a
half-written file under its real name.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "train_state.json"
MODEL_FILE = "model.safetensors"
BEST_FILE = "best_feasible.safetensors"
CONTROLLER_FILE = "controller.pt"


def engine_file(rank: int) -> str:
    return f"engine_rank{rank}.pt"


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


@dataclass
class TrainState:
    """Where a run stands after ``step`` optimiser steps of ``phase`` ("dense" or "main")."""

    phase: str
    step: int
    model: dict[str, torch.Tensor]
    engine: dict[str, Any] | None = None
    controller: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # JSON: histories, best score, CE_dense, restarts
    best_feasible: tuple[float, dict[str, torch.Tensor]] | None = None


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then ``os.replace(tmp, path)``: readers see the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def rng_state() -> dict[str, Any]:
    """This process's torch, numpy and Python RNG states as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy_kind": str(kind),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached": float(cached),
        "python_version": int(version),
        "python_internal": list(internal),
        "python_gauss": gauss,
    }


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(
        (
            s["numpy_kind"],
            s["numpy_keys"].numpy().astype(np.uint32),
            s["numpy_pos"],
            s["numpy_has_gauss"],
            s["numpy_cached"],
        )
    )
    random.setstate((s["python_version"], tuple(s["python_internal"]), s["python_gauss"]))


def _tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share memory (tied embeddings)
    return {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}


def save_state(folder: str | Path, state: TrainState, *, rank: int) -> None:
    """Write ``state`` into ``folder``: shared files from rank 0, per-rank files from every rank."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if state.engine is not None:
        atomic_write(folder / engine_file(rank), lambda p: torch.save(state.engine, p))
    atomic_write(folder / rng_file(rank), lambda p: torch.save(state.rng if state.rng is not None else rng_state(), p))
    if rank != 0:
        return
    atomic_write(folder / MODEL_FILE, lambda p: save_file(_tensors(state.model), str(p)))
    meta = {**state.meta, "phase": state.phase, "step": int(state.step)}
    if state.best_feasible is not None:
        density, sd = state.best_feasible
        atomic_write(folder / BEST_FILE, lambda p: save_file(_tensors(sd), str(p)))
        meta["best_feasible_density"] = float(density)
    if state.controller is not None:
        atomic_write(folder / CONTROLLER_FILE, lambda p: torch.save(state.controller, p))
    # the JSON last: a folder with train_state.json has every other file of rank 0
    atomic_write(folder / STATE_FILE, lambda p: p.write_text(json.dumps(meta, default=float)))


def load_state(folder: str | Path, *, rank: int) -> TrainState | None:
    """The state saved in ``folder`` as rank ``rank`` needs it; None when it holds no training state
    (e.g. a finished trial's model checkpoint)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        return None
    meta = json.loads((folder / STATE_FILE).read_text())

    def pt(name: str) -> Any:
        p = folder / name
        return torch.load(p, map_location="cpu", weights_only=True) if p.is_file() else None

    best = None
    if (folder / BEST_FILE).is_file():
        best = (float(meta["best_feasible_density"]), load_file(str(folder / BEST_FILE)))
    return TrainState(
        phase=str(meta["phase"]),
        step=int(meta["step"]),
        model=load_file(str(folder / MODEL_FILE)),
        engine=pt(engine_file(rank)),
        controller=pt(CONTROLLER_FILE),
        rng=pt(rng_file(rank)),
        meta=meta,
        best_feasible=best,
    )
