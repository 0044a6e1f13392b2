"""The shared dense start of a search (``search.dense_start: shared``).

Every trial of a targeted, prune, penalised or constrained search begins from a dense model trained
for ``objective.dense_steps``. No knob of the search space changes that phase, so with
``per_trial`` every trial trains the same dense model again. ``shared`` trains it once, before any
trial, as one Ray task (one process, plain AdamW, with the CPUs of the trials that would run at once
and one GPU where the trials use GPUs), saves it in ``RUN_DIR/dense/`` (the model folder layout of
``econ_ray.modeling.save_model``, with the dense summary in ``econ.json``) and points every trial at
it: ``model.name`` the saved folder, ``objective.dense_reference: model``. Every trial then has the
same start and the same distillation teacher, as in CoFi's protocol, and the dense steps are paid
once. A resumed search finds ``RUN_DIR/dense/econ.json`` and trains nothing.

The run folder must be readable where the trials run: on one machine it is; on a multi-node cluster
put it on shared storage (``--run-dir``), as for ``registry load`` of the trials' models.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from econ_ray.config.schema import SearchSpaceFile

DENSE_DIR = "dense"
SUMMARY_FILE = "econ.json"

# the fields of the dense summary a search reports (SearchOutcome.dense, the parent run's metrics)
DENSE_FIELDS = ("metric_name", "metric", "ce_dense", "dense_total_gflops", "static_gflops", "dense_steps", "train_s")


def dense_folder(root: Path) -> Path:
    return root / DENSE_DIR


def dense_resources(cfg: SearchSpaceFile) -> dict[str, float]:
    """What the dense start reserves: the CPUs of the trials that run at once (it runs before them, and the
    pre-flight checked the cluster holds them) and one GPU (or the trial's share of one) where trials use GPUs."""
    d = cfg.distributed
    res = {"num_cpus": cfg.search.concurrency * d.workers * d.cpus_per_worker}
    if d.gpus_per_worker > 0:
        res["num_gpus"] = min(1.0, d.gpus_per_worker * d.workers)
    return res


def trials_from(cfg: SearchSpaceFile, folder: Path) -> SearchSpaceFile:
    """``cfg`` with every trial starting from the dense model saved in ``folder`` (a file whose dense start
    is done: nothing left to share)."""
    objective = cfg.objective.model_copy(update={"dense_reference": "model", "dense_steps": 0})
    model = cfg.model.model_copy(update={"name": str(folder / "model")})
    search = cfg.search.model_copy(update={"dense_start": "per_trial"})
    return cfg.model_copy(update={"objective": objective, "model": model, "search": search})


def read_summary(folder: Path) -> dict[str, Any] | None:
    """The dense summary of a finished dense start in ``folder``, or None."""
    path = folder / SUMMARY_FILE
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    summary = meta.get("summary") or {}
    return {k: summary.get(k) for k in DENSE_FIELDS}


def _train_and_save(run_config: dict[str, Any], folder: str, threads: int, device: str) -> dict[str, Any]:
    """In a Ray task: train the dense phase, save the model, return its summary."""
    import torch

    from econ_ray.config.schema import RunConfig
    from econ_ray.modeling import save_model
    from econ_ray.training.loop import train_dense

    torch.set_num_threads(threads)
    cfg = RunConfig.model_validate(run_config)
    cfg.training.device = device
    cfg.training.progress = False
    t0 = time.time()
    result = train_dense(cfg)
    summary = {**result.summary, "train_s": time.time() - t0}
    p = result.prepared
    tmp = Path(folder + ".partial")
    save_model(tmp, p.model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=summary)
    tmp.rename(folder)  # a kill mid-save leaves no folder that looks finished
    return {k: summary.get(k) for k in DENSE_FIELDS}


def shared_dense_start(cfg: SearchSpaceFile, root: Path) -> tuple[SearchSpaceFile, dict[str, Any], bool]:
    """(the trials' config, the dense summary, whether it was trained now) for a search whose file says
    ``dense_start: shared``; trains and saves the dense model unless ``root`` already holds it."""
    import shutil

    import ray

    from econ_ray.search.space import trial_config

    folder = dense_folder(root)
    summary = read_summary(folder)
    trained = summary is None
    if summary is None:
        shutil.rmtree(str(folder) + ".partial", ignore_errors=True)
        res = dense_resources(cfg)
        device = "cuda" if res.get("num_gpus") else "cpu"
        threads = max(1, math.floor(res["num_cpus"]))
        task = ray.remote(**res)(_train_and_save)  # type: ignore[call-overload]  # ray.remote's overloads
        run_config = trial_config(cfg, {}).model_dump()
        summary = ray.get(task.remote(run_config, str(folder), threads, device))
    return trials_from(cfg, folder), summary, trained
