"""Training state of a run in the middle of a phase, saved so a restarted worker goes on from it.

A Ray Train worker that dies (killed, out of memory, node lost) is restarted by Ray Train
(``FailureConfig.max_failures``) with the latest reported checkpoint; ``train_run`` then resumes
at the saved phase and step instead of starting over. A state folder holds:

    train_state.json            the RunState: phase, step, histories, best score, CE_dense, restarts (JSON)
    model.safetensors           the model's weights, gate biases included (rank 0)
    best_feasible.safetensors   the objective's model snapshot (constrained: the sparsest that met the
                                ceiling; rank 0)
    teacher.safetensors         the distillation teacher's weights, when the run distils (rank 0)
    engine_rank{r}.pt           rank r's optimiser and LR-schedule state (tensors and plain values)
    rng_rank{r}.pt              rank r's torch, numpy and Python RNG states
    controller.pt               the objective's tensor state (constrained: the Lagrange multiplier and
                                its nuPI state; rank 0)

Nothing is ever unpickled: tensors go through safetensors, and the ``.pt`` files hold only
tensors, numbers, strings, lists and dicts, loaded with ``torch.load(weights_only=True)``. Every file
is written to a temporary name and moved into place with ``os.replace``, so a folder never holds a
half-written file under its real name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from econ_ray.objectives.base import ObjectiveState

STATE_FILE = "train_state.json"
MODEL_FILE = "model.safetensors"
BEST_FILE = "best_feasible.safetensors"
TEACHER_FILE = "teacher.safetensors"
CONTROLLER_FILE = "controller.pt"


def engine_file(rank: int) -> str:
    return f"engine_rank{rank}.pt"


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.pt"


@dataclass
class RunState:
    """Where a run stands: what ``train_run`` carries from phase to phase and what a checkpoint records
    besides weights, optimiser, RNG and the objective's state (saved as ``train_state.json``)."""

    phase: str = "dense"  # "dense" | "main"
    step: int = 0  # optimiser steps done in ``phase``
    restarts: list[dict[str, Any]] = field(default_factory=list)  # {"phase", "step"} of each resume
    history: list[dict[str, Any]] = field(default_factory=list)  # main-phase evaluation records
    multiplier_history: list[float] = field(default_factory=list)  # the objective's per-step field
    best_score: float = -math.inf  # best validation score so far (metric, sign so that higher is better)
    bad_evals: int = 0  # validations since it last improved
    ce_dense: float | None = None  # held-out CE after the dense phase (set when the main phase begins)
    dense_metric: float | None = None  # validation metric after the dense phase
    dense_validation_ce: float | None = None  # validation CE after the dense phase (a paired validation ceiling)

    def to_json(self) -> dict[str, Any]:
        return {
            "restarts": self.restarts,
            "history": self.history,
            "mu_history": self.multiplier_history,
            "best_score": self.best_score,
            "bad_evals": self.bad_evals,
            "ce_dense": self.ce_dense,
            "dense_metric": self.dense_metric,
            "dense_validation_ce": self.dense_validation_ce,
            "phase": self.phase,
            "step": int(self.step),
        }

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> RunState:
        ce_dense, dense_metric = meta.get("ce_dense"), meta.get("dense_metric")
        dense_val = meta.get("dense_validation_ce")
        return cls(
            phase=str(meta["phase"]),
            step=int(meta["step"]),
            restarts=list(meta.get("restarts", [])),
            history=list(meta.get("history", [])),
            multiplier_history=[float(x) for x in meta.get("mu_history", [])],
            best_score=float(meta.get("best_score", -math.inf)),
            bad_evals=int(meta.get("bad_evals", 0)),
            ce_dense=None if ce_dense is None else float(ce_dense),
            dense_metric=None if dense_metric is None else float(dense_metric),
            dense_validation_ce=None if dense_val is None else float(dense_val),
        )

    def copy(self) -> RunState:
        """A copy whose lists do not change as the run goes on."""
        return dataclasses.replace(
            self,
            restarts=list(self.restarts),
            history=list(self.history),
            multiplier_history=list(self.multiplier_history),
        )


@dataclass
class TrainState:
    """A checkpoint: the run state after ``run.step`` optimiser steps of ``run.phase``, with the model's
    weights, this rank's optimiser and RNG states, and the objective's state."""

    run: RunState
    model: dict[str, torch.Tensor]
    engine: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    objective: ObjectiveState = field(default_factory=ObjectiveState)
    teacher: dict[str, torch.Tensor] | None = None  # the distillation teacher's weights (main phase)

    @property
    def phase(self) -> str:
        return self.run.phase

    @property
    def step(self) -> int:
        return self.run.step


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
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy_kind": str(kind),
        "numpy_keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
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


def _write_text(path: Path, text: str) -> None:
    path.write_text(text)


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
    meta = state.run.to_json()
    obj = state.objective
    if obj.snapshot is not None:
        density, sd = obj.snapshot
        atomic_write(folder / BEST_FILE, lambda p: save_file(_tensors(sd), str(p)))
        meta["best_feasible_density"] = float(density)
    if state.teacher is not None:
        teacher = state.teacher
        atomic_write(folder / TEACHER_FILE, lambda p: save_file(_tensors(teacher), str(p)))
    if obj.tensors is not None:
        atomic_write(folder / CONTROLLER_FILE, lambda p: torch.save(obj.tensors, p))
    text = json.dumps(meta, default=float)
    # the JSON last: a folder with train_state.json has every other file of rank 0
    atomic_write(folder / STATE_FILE, lambda p: _write_text(p, text))


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
        run=RunState.from_json(meta),
        model=load_file(str(folder / MODEL_FILE)),
        engine=pt(engine_file(rank)),
        rng=pt(rng_file(rank)),
        objective=ObjectiveState(tensors=pt(CONTROLLER_FILE), snapshot=best),
        teacher=load_file(str(folder / TEACHER_FILE)) if (folder / TEACHER_FILE).is_file() else None,
    )
