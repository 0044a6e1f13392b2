"""One search trial: a Ray Tune function trainable that launches a Ray Train ``TorchTrainer``.

Ray 2.60 Train V2 interop (``Tuner(trainer)`` is deprecated): the Tune function builds a
``TorchTrainer`` whose workers run :func:`train_worker` (the core ``train_run``, with a DeepSpeed
engine); Ray Train's ``TuneReportCallback`` forwards every worker report to Tune, so Tune (and the
MLflow callback in the driver) sees per-evaluation metrics live. The last report carries
``final = 1``, the summary, and a checkpoint: the saved model folder plus ``history.json`` (every
evaluation, and the Lagrange multiplier at every step).

Worker failures: every ``training.checkpoint_every`` steps (default ``eval_every``) each worker
reports its training state (``econ_ray.training.checkpoint``: weights, optimiser, multiplier, RNG) as
a Ray Train checkpoint; the trainer's ``FailureConfig(max_failures=distributed.max_failures)``
restarts a failed worker group, whose workers load ``ray.train.get_checkpoint()`` and go on from that
step. The summary then says ``restarts`` and ``resumed_from_step``. Each worker writes its PID to
``<train storage>/<trial>/worker_pids/rank<r>.pid`` (local storage), and appends "rank pid node_id"
to ``worker_pids/history`` (every attempt, restarts included), so an operator, or a test, can find the
processes of one trial and the Ray nodes they ran on.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from econ_ray.config.schema import DistributedConfig, RunConfig, SearchSpaceFile
from econ_ray.search.space import trial_config

if TYPE_CHECKING:
    from transformers import PreTrainedModel

HISTORY_FILE = "history.json"
TIMING_FILE = "timing.json"  # where a trial's wall time went (benchmarks/machinery_overhead.py)

# Summary keys reported to Tune (scalars only; everything else is in the checkpoint folder).
REPORT_KEYS = (
    "metric",
    "metric_name",
    "ce",
    "ce_heldout",
    "ce_dense",
    "dense_metric",
    "attention_density",
    "ffn_density",
    "gini",
    "entropy_bits",
    "empty_row_fraction",
    "dead_heads",
    "dead_neurons",
    "seq_len",
    "dense_gflops",
    "latency_ms",
    "latency_p10_ms",
    "latency_p90_ms",
    "latency_threads",
    "static_gflops",
    "effective_gflops",
    "attention_gflops",
    "effective_attention_gflops",
    "dense_total_gflops",
    "lam",
    "alpha",
    "beta",
    "tau",
    "tau_rel",
    "tau_aim",
    "objective",
    "method",
    "target_ratio",
    "target_gflops",
    "cut_gflops",
    "attention",
    "multiplier",
    "feasible",
    "certified",
    "snapshot_step",
    "ce_certified",
    "infeasible_reason",
    "steps",
    "task",
    "task_kind",
    "num_labels",
    "vocab_size",
    "restarts",
    "resumed_from_step",
    "resumed_from_phase",
)
CHECKPOINT_FLAG = "train_checkpoint"  # set on the reports that only carry a training-state checkpoint
PID_DIR = "worker_pids"
PID_HISTORY = "history"  # in PID_DIR: "rank pid node_id" for each worker of each attempt


def _scalar(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class _StopRequested(Exception):
    """The search's scheduler asked this trial to stop (see econ_ray.search.moasha.stop_file)."""


def _stop_requested(path: str) -> bool:
    """Whether the stop flag exists, agreed by all ranks (so they all leave at the same step)."""
    import torch
    import torch.distributed as tdist

    flag = 1.0 if os.path.exists(path) else 0.0
    if tdist.is_available() and tdist.is_initialized():
        dev = (
            torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else torch.device("cpu")
        )
        t = torch.tensor([flag], device=dev)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        flag = float(t.item())
    return flag > 0


def train_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: the core training run with DeepSpeed, reporting to Tune."""
    t_entry = time.time()  # before the heavy imports: launch = Ray Train start-up + these imports
    import ray.train
    import torch
    from ray.train import Checkpoint

    from econ_ray.modeling import save_model
    from econ_ray.training import RunHooks, train_run
    from econ_ray.training.checkpoint import TrainState, load_state, save_state
    from econ_ray.training.deepspeed_engine import DeepSpeedEngine

    t_worker = time.time()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = RunConfig.model_validate(config["run"])
    dist = DistributedConfig.model_validate(config["distributed"])
    if dist.gpus_per_worker > 0 and torch.cuda.is_available():
        cfg.training.device = f"cuda:{ctx.get_local_rank()}"
    else:
        cfg.training.device = "cpu"
    cfg.training.progress = False
    # wall-clock split of this worker (seconds); evaluation = time from a step's end to its on_eval
    timing: dict[str, Any] = {
        "t_trial_start": config.get("t_trial_start"),
        "t_worker_entry": t_entry,
        "t_worker_start": t_worker,
        "engine_init_s": 0.0,
        "eval_s": 0.0,
        "report_s": 0.0,
        "n_evals": 0,
    }
    last = {"step": t_worker}
    if config.get("pid_dir"):
        Path(config["pid_dir"]).mkdir(parents=True, exist_ok=True)
        Path(config["pid_dir"], f"rank{rank}.pid").write_text(str(os.getpid()))
        with open(Path(config["pid_dir"], PID_HISTORY), "a") as f:  # every attempt's workers, restarts included
            f.write(f"{rank} {os.getpid()} {ray.get_runtime_context().get_node_id()}\n")

    resume = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # a restart after a worker failure: go on from the last training state
        with ckpt.as_directory() as folder:
            resume = load_state(folder, rank=rank)
    every = cfg.training.checkpoint_every if cfg.training.checkpoint_every is not None else cfg.training.eval_every
    if dist.deepspeed and dist.zero_stage == 3:
        every = 0  # ZeRO-3 partitions the weights themselves: model.state_dict() is not the model

    def on_checkpoint(state: TrainState) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save_state(tmp, state, rank=rank)  # every rank: its optimiser partition and RNG; rank 0 the rest
            ray.train.report(
                {"final": 0, CHECKPOINT_FLAG: 1, "checkpoint_step": state.step},
                checkpoint=Checkpoint.from_directory(tmp),
                checkpoint_dir_name=f"state-{state.phase}-{state.step:07d}",
            )

    def engine_factory(model, steps, phase):
        t0 = time.time()
        try:
            return _make_engine(model, steps)
        finally:
            timing["engine_init_s"] += time.time() - t0

    def _make_engine(model, steps):
        if dist.deepspeed:
            return DeepSpeedEngine(model, dist=dist, training=cfg.training, total_steps=steps)
        from econ_ray.training.engine import TorchEngine

        t = cfg.training
        return TorchEngine(
            model,
            lr=t.lr,
            gate_lr=t.gate_lr,
            weight_decay=t.weight_decay,
            total_steps=steps,
            warmup_ratio=t.warmup_ratio,
            schedule=t.schedule,
            grad_clip=t.grad_clip,
            gate_key_bias=t.gate_key_bias,
        )

    def on_step(rec: dict[str, Any]) -> None:
        last["step"] = time.time()

    def on_eval(rec: dict[str, Any]) -> None:
        now = time.time()
        timing["eval_s"] += now - last["step"]
        timing["n_evals"] += 1
        ray.train.report({**{k: _scalar(v) for k, v in rec.items() if isinstance(v, (int, float, bool))}, "final": 0})
        last["step"] = time.time()
        timing["report_s"] += last["step"] - now  # the report is logging, not evaluation or training
        if config.get("stop_file") and _stop_requested(config["stop_file"]):
            raise _StopRequested  # the scheduler stopped this trial (econ_ray.search.moasha)

    from econ_ray.training.loop import prepare

    prepared = prepare(cfg)
    timing["prepare_s"] = time.time() - t_worker
    t_run = time.time()
    try:
        result = train_run(
            cfg,
            engine_factory=engine_factory,
            hooks=RunHooks(on_step=on_step, on_eval=on_eval, on_checkpoint=on_checkpoint, checkpoint_every=every),
            shard=(rank, world),
            prepared=prepared,
            resume=resume,
        )
    except _StopRequested:
        return  # stopped early: the last report stays partial (final = 0), so the trial counts as stopped
    t_end = time.time()
    timing["final_eval_s"] = t_end - last["step"]
    # training = the rest of train_run: dense and main steps (plus the two small dense-reference evaluations)
    timing["train_s"] = (t_end - t_run) - sum(
        timing[k] for k in ("eval_s", "report_s", "final_eval_s", "engine_init_s")
    )
    if config.get("latency") and rank == 0:
        from econ_ray.surgery.physical import pruned_latency

        threads, repeats = config["latency"]
        p = result.prepared
        result.summary.update(
            pruned_latency(
                cast("PreTrainedModel", p.model),
                p.runtime,
                seq_len=cfg.data.max_length,
                threads=threads,
                repeats=repeats,
            )
        )
    summary = {k: _scalar(result.summary.get(k)) for k in REPORT_KEYS}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            p = result.prepared
            save_model(tmp, p.model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=result.summary)
            history = {
                "evaluations": result.history,
                "multiplier": result.multiplier_history,
                "restarts": result.summary.get("restarts", 0),
                "resumed_from_step": result.summary.get("resumed_from_step"),
            }
            Path(tmp, HISTORY_FILE).write_text(json.dumps(history, default=float))
            timing["save_s"] = time.time() - t_end
            timing["t_final_report"] = time.time()
            Path(tmp, TIMING_FILE).write_text(json.dumps(timing))
            checkpoint = Checkpoint.from_directory(tmp)
        ray.train.report({**summary, "final": 1}, checkpoint=checkpoint)


def _torch_trainer_class():
    """Ray's ``TorchTrainer``, with a faster-stopping placement-group cleaner where Ray 2.60 has one.

    Ray Train V2 starts a ``PlacementGroupCleaner`` actor per run and, at the end of the run, waits for
    it to stop for ``2 * check_interval + get_actor_timeout`` = 12 s; its monitor thread is usually
    inside a 10 s state-API call then, so every run ended with a 12 s wait (the controller log says
    "Failed to stop PlacementGroupCleaner gracefully"; ray-project/ray#62516 notes the timing). A
    trial cannot end, and free its slot, before that wait is over. The same cleaner with a 2 s
    state-API timeout stops in about 4 s and still removes the placement group of a controller that
    died (docs/benchmarks.md section 5). On a Ray without that callback the stock trainer is used.
    """
    from ray.train.torch import TorchTrainer

    try:
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:
        return TorchTrainer
    if not hasattr(TorchTrainer, "_create_default_callbacks"):
        return TorchTrainer

    class EconTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [
                PlacementGroupCleanerCallback(check_interval_s=1.0, get_actor_timeout_s=2.0)
                if isinstance(cb, PlacementGroupCleanerCallback)
                else cb
                for cb in super()._create_default_callbacks()
            ]

    return EconTorchTrainer


def trial_fn(config: dict[str, Any]) -> None:
    """The Tune function trainable: the file's run config + this trial's knobs on a TorchTrainer."""
    import ray.train
    from ray.train.torch import TorchConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    t_trial_start = time.time()
    file_cfg = SearchSpaceFile.model_validate(config["file"])
    run_cfg = trial_config(file_cfg, config.get("knobs", {}))
    dist = file_cfg.distributed
    use_gpu = dist.gpus_per_worker > 0
    resources = {"CPU": dist.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = dist.gpus_per_worker
    from ray import tune

    trial_name = tune.get_context().get_trial_name()
    storage = str(config["train_storage"])
    local = "://" not in storage or storage.startswith("file://")
    pid_dir = str(Path(storage.removeprefix("file://"), trial_name, PID_DIR)) if local else None
    from econ_ray.search.moasha import stop_file

    flag = stop_file(config, trial_name)
    trainer = _torch_trainer_class()(
        train_worker,
        train_loop_config={
            "run": run_cfg.model_dump(),
            "distributed": dist.model_dump(),
            "pid_dir": pid_dir,
            "t_trial_start": t_trial_start,
            "stop_file": str(flag) if flag else None,
            # search.cost latency: time the pruned model at the end (threads, repeats)
            "latency": (
                (file_cfg.search.latency_threads, file_cfg.search.latency_repeats)
                if file_cfg.search.cost == "latency"
                else None
            ),
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=dist.workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=ray.train.RunConfig(  # type: ignore[call-arg]  # V2's RunConfig (worker_runtime_env); mypy sees V1's
            name=trial_name,
            storage_path=config["train_storage"],
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # a Train V2 callback; mypy sees V1's types
            failure_config=ray.train.FailureConfig(max_failures=dist.max_failures),
            # the newest two: the last training state, and the final model once reported
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            worker_runtime_env={
                "env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}
            },
        ),
    )
    trainer.fit()
