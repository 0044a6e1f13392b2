"""DeepSpeed as an :class:`~econ_ray.training.engine.Engine`: ZeRO, micro-batches, accumulation, precision.

Used inside Ray Train workers, where ``torch.distributed`` is already initialised (gloo on CPU,
NCCL on GPUs); DeepSpeed picks up that process group. On CPU DeepSpeed runs its CPU accelerator,
whose first start JIT-compiles a communication op (about a minute, cached afterwards).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from econ_ray.config.schema import DistributedConfig, TrainingConfig
from econ_ray.training.engine import lr_schedule, param_groups, restore_schedule


def deepspeed_config(dist: DistributedConfig, training: TrainingConfig, *, cuda: bool) -> dict[str, Any]:
    """The DeepSpeed config dict for one worker (bf16 only on CUDA unless asked for fp32)."""
    bf16 = dist.precision == "bf16" or (dist.precision == "auto" and cuda)
    return {
        "train_micro_batch_size_per_gpu": training.batch_size,
        "gradient_accumulation_steps": dist.gradient_accumulation,
        "zero_optimization": {"stage": dist.zero_stage},
        "bf16": {"enabled": bool(bf16)},
        "gradient_clipping": training.grad_clip or 0.0,  # 0: none
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def import_deepspeed():
    """``import deepspeed``, without the MLflow import its autotuner does at import time.

    ``deepspeed.autotuning.autotuner`` runs ``import mlflow`` at module level for its own autotuning
    logs, which econ-ray never uses (the driver tracks to MLflow, the workers only report to Tune).
    That import alone is about a quarter of a Ray Train worker's start-up imports here (measured
    with ``python -X importtime``; docs/benchmarks.md section 5), paid by every worker of every trial.
    If MLflow is already loaded in this process, nothing is hidden.
    """
    import sys

    if "deepspeed" in sys.modules or "mlflow" in sys.modules:
        import deepspeed

        return deepspeed
    sys.modules["mlflow"] = None  # makes `import mlflow` raise ImportError
    try:
        import deepspeed
    finally:
        if sys.modules.get("mlflow", 0) is None:
            del sys.modules["mlflow"]
    return deepspeed


class DeepSpeedEngine:
    """``deepspeed.initialize`` around our AdamW groups and warm-up/decay schedule."""

    def __init__(
        self, model: nn.Module, *, dist: DistributedConfig, training: TrainingConfig, total_steps: int
    ) -> None:
        deepspeed = import_deepspeed()
        cuda = torch.cuda.is_available() and dist.gpus_per_worker > 0
        optimizer = torch.optim.AdamW(
            param_groups(
                model,
                lr=training.lr,
                gate_lr=training.gate_lr,
                weight_decay=training.weight_decay,
                gate_key_bias=training.gate_key_bias,
            )
        )
        optimizer_steps = max(1, math.ceil(total_steps / dist.gradient_accumulation))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_schedule(training.schedule, optimizer_steps, training.warmup_ratio)
        )
        self.config = deepspeed_config(dist, training, cuda=cuda)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=self.config
        )
        self.module = self.engine  # training forward goes through the engine (ZeRO hooks, precision)
        # DeepSpeed keeps our AdamW as its basic optimiser, over this rank's (ZeRO-partitioned) fp32
        # parameters: its state_dict holds tensors and plain values only, loadable with weights_only
        self.basic_optimizer = optimizer
        self.lr_scheduler = scheduler

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        # optimiser and scheduler step at accumulation boundaries, gradients zeroed
        self.engine.step()

    @property
    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def state_dict(self) -> dict:
        """This rank's AdamW moments (over its ZeRO partition) and the LR schedule's position. The
        fp32 master weights are rebuilt from the model's weights when the engine is created, so a
        restart loads the model first, then this (exact in fp32; bf16 keeps the bf16-rounded weights)."""
        return {"optimizer": self.basic_optimizer.state_dict(), "scheduler": self.lr_scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.basic_optimizer.load_state_dict(state["optimizer"])
        restore_schedule(self.basic_optimizer, self.lr_scheduler, state["scheduler"])
