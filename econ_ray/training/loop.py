"""One training run, shaped to run unchanged inside a Ray Train worker.

``train_run(cfg)`` builds data, tokenizer and model, installs econ-ray attention, then runs its
phases, each a function of one :class:`~econ_ray.training.checkpoint.RunState` (step, phase,
histories, best score, CE_dense, restarts: what a checkpoint saves besides the tensors):

1. ``_dense_phase``: ``objective.dense_steps`` of dense training (skipped when ``dense_reference:
   model``);
2. ``_dense_reference``: the dense model's held-out CE, CE_dense (the reference of ``tau_rel``), and
   validation metric;
3. ``_main_phase``: the configured attention mode under the objective of ``objective.kind`` (an
   :class:`~econ_ray.objectives.Objective`: it says which costs the runtime records, gives the loss of
   each batch and works before each step, e.g. the constrained multiplier's held-out CE every
   ``objective.constraint_every`` steps), with validation every ``eval_every`` steps and early
   stopping on the validation metric where the objective allows it;
4. ``_final``: a final evaluation computing every metric of METHOD section 5 and the FLOPs of
   section 6, and the summary.

The optimiser comes from an ``engine_factory`` (plain AdamW by default, DeepSpeed in a Ray Train
worker); ``shard`` = (rank, world size) splits the training batches between data-parallel workers.
:class:`RunHooks` holds the callbacks: ``on_step`` and ``on_eval`` receive records for trackers; with
``checkpoint_every`` = N and ``on_checkpoint``, the run hands a :class:`TrainState` (run state,
weights, optimiser, RNG, the objective's state) to ``on_checkpoint`` every N steps of either phase. A
run given ``resume=`` such a state goes on from its phase and step (the data order is fast-forwarded
by :func:`fast_forward`, the dense phase is not redone once the main phase has begun) and lists the
restart in ``summary["restarts"]`` / ``summary["resumed_from_step"]``.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from econ_ray.attention.runtime import EconRuntime, install
from econ_ray.config.schema import RunConfig
from econ_ray.data import EncodedSplit, TaskSpec, encode_split, load_task_for
from econ_ray.metrics.task import higher_is_better
from econ_ray.modeling import build_model, build_tokenizer
from econ_ray.objectives import CostKind, Objective, ObjectiveEnv, ObjectiveState, make_objective
from econ_ray.objectives.constrained import constraint_step, constraint_updates
from econ_ray.training.checkpoint import RunState, TrainState, rng_state, set_rng_state
from econ_ray.training.distill import Distiller, make_teacher, teacher_kl_sum
from econ_ray.training.engine import Engine, TorchEngine
from econ_ray.training.evaluate import evaluate, task_loss_and_outputs

# (model, steps of the phase, phase name "dense" | "main") -> Engine. ``engine.module`` is what the
# training forward calls (the model itself, or a DeepSpeed engine around it); evaluation, snapshots
# and saving use the model directly.
EngineFactory = Callable[[nn.Module, int, str], Engine]
Record = dict[str, Any]
T = TypeVar("T")

__all__ = [
    "DivergenceError",
    "EngineFactory",
    "Prepared",
    "RunHooks",
    "RunResult",
    "constraint_step",
    "constraint_updates",
    "prepare",
    "resolve_device",
    "seed_everything",
    "train_dense",
    "train_run",
]


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite. The message starts with "training diverged", which
    is how a search's failed-trial reason names the cause."""


@dataclass
class Prepared:
    """Everything a run works on, built from the config."""

    cfg: RunConfig
    task: TaskSpec
    tokenizer: Any
    model: nn.Module
    runtime: EconRuntime
    train: EncodedSplit
    validation: EncodedSplit
    heldout: EncodedSplit
    device: torch.device


@dataclass
class RunResult:
    """The outcome of ``train_run``: the summary (the CLI's JSON), histories and the trained model."""

    summary: Record
    prepared: Prepared  # the trained model, its tokenizer, runtime, task and splits
    history: list[Record] = field(default_factory=list)
    multiplier_history: list[float] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare(cfg: RunConfig) -> Prepared:
    """Load the task, build tokenizer and model, install econ-ray attention, encode the splits."""
    seed_everything(cfg.training.seed)
    d = cfg.data
    splits = load_task_for(d, seed=cfg.training.seed)
    # a word vocabulary covers every split's words (no unknown token); a BPE learns from training text only
    seen = splits.train if cfg.model.tokenizer == "bpe" else splits.train + splits.validation + splits.heldout
    texts = [t for ex in seen for t in (ex.get("text"), ex.get("text_pair")) if t]
    tokenizer = build_tokenizer(cfg.model, texts, d.max_length)
    model = build_model(cfg.model, splits.task, tokenizer, d.max_length)
    a = cfg.attention
    rt = install(
        model,
        mode="dense",
        gate_bias_init=a.gate_bias_init,
        keep_strongest=a.keep_strongest,
        ffn_activation=cfg.model.ffn_activation,
    )
    device = resolve_device(cfg.training.device)
    model.to(device)
    enc = {
        name: encode_split(getattr(splits, name), splits.task, tokenizer, d.max_length, packing=d.packing)
        for name in ("train", "validation", "heldout")
    }
    return Prepared(cfg, splits.task, tokenizer, model, rt, enc["train"], enc["validation"], enc["heldout"], device)


def _batches(n: int, batch_size: int, seed: int, shard: tuple[int, int]) -> Iterator[torch.Tensor]:
    """Endless shuffled mini-batches of row indices; each worker takes every world-th batch."""
    rank, world = shard
    gen = torch.Generator().manual_seed(seed)
    i = 0
    while True:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            if i % world == rank:
                yield perm[start : start + batch_size]
            i += 1


def heldout_parts(heldout: EncodedSplit) -> tuple[EncodedSplit, EncodedSplit]:
    """The held-out split in two disjoint parts: (drive, certify) = (first half, second half).

    ``drive`` feeds a multiplier (the constrained objective's held-out batches); ``certify`` is read
    only by evaluations that decide which snapshot is kept and whether a run met its ceiling, and
    gives CE_dense, the reference of a relative ceiling. A split of one row has no drive part."""
    n = len(heldout)
    return heldout.rows(slice(0, n // 2)), heldout.rows(slice(n // 2, n))


def _cycle(n: int, batch_size: int) -> Iterator[torch.Tensor]:
    if n <= 0:
        raise ValueError(
            "the held-out split has no rows to drive the multiplier: the constrained objective needs at"
            " least 2 held-out examples (raise data.heldout_fraction or data.train_size)"
        )
    while True:
        for start in range(0, n, batch_size):
            yield torch.arange(start, min(start + batch_size, n))


def fast_forward(batches: Iterator[T], n: int) -> Iterator[T]:
    """Skip the first ``n`` items of ``batches`` (a resumed run sees the data of an uninterrupted one)."""
    for _ in range(n):
        next(batches)
    return batches


def _steps_for(cfg: RunConfig, n_train: int, world: int) -> int:
    t = cfg.training
    if t.max_steps is not None:
        return t.max_steps
    return max(1, math.ceil(t.epochs * n_train / (t.batch_size * world)))


def _default_engine(cfg: RunConfig) -> EngineFactory:
    t = cfg.training

    def make(model: nn.Module, total_steps: int, phase: str) -> Engine:
        return TorchEngine(
            model,
            lr=t.lr,
            gate_lr=t.gate_lr,
            weight_decay=t.weight_decay,
            total_steps=total_steps,
            warmup_ratio=t.warmup_ratio,
            schedule=t.schedule,
            grad_clip=t.grad_clip,
            gate_key_bias=t.gate_key_bias,
        )

    return make


@dataclass(frozen=True)
class RunHooks:
    """Callbacks of a run: trackers (``on_step``, ``on_eval``) and training-state checkpoints (every
    ``checkpoint_every`` steps of either phase, handed to ``on_checkpoint``; none when either is unset)."""

    on_step: Callable[[Record], None] | None = None
    on_eval: Callable[[Record], None] | None = None
    on_checkpoint: Callable[[TrainState], None] | None = None
    checkpoint_every: int | None = None

    def checkpoint_due(self, step: int, last: int) -> bool:
        """Whether step ``step`` (1-based) of a phase of ``last`` steps hands a checkpoint (never the last)."""
        every = self.checkpoint_every
        if not every or self.on_checkpoint is None:
            return False
        return step % every == 0 and step < last


def _progress(enabled: bool | None, total: int, desc: str) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def _forward_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch)
    return out.loss


def _record_costs(rt: EconRuntime, costs: frozenset[CostKind]) -> None:
    """Make the runtime record the costs an objective needs (its one switch records both kinds)."""
    rt.need_costs = bool(costs)


@contextmanager
def _measuring(model: nn.Module, rt: EconRuntime) -> Iterator[None]:
    """Deterministic gates (eval mode), no autograd state and no cost terms (nothing reads them: the
    primal forward records its own), then back to the training mode the model was in."""
    was_training = model.training
    with rt.override(need_costs=False), torch.no_grad():
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)


def _deterministic_ce(model: nn.Module, rt: EconRuntime, batch: dict[str, torch.Tensor]) -> float:
    """CE of ``batch`` under deterministic gates (:func:`_measuring`)."""
    with _measuring(model, rt):
        return float(_forward_loss(model, batch))


def _deterministic_kl(
    model: nn.Module, rt: EconRuntime, teacher: nn.Module, batches: Iterator[dict[str, torch.Tensor]], kind: str
) -> float:
    """Mean KL(teacher || student) of ``batches`` (per example, or per predicted token for an LM) with
    the student under deterministic gates (:func:`_measuring`)."""
    total, count = 0.0, 0
    with _measuring(model, rt):
        for batch in batches:
            s, n = teacher_kl_sum(model, teacher, batch, kind)
            total, count = total + s, count + n
    return total / max(count, 1)


def _dense_ce(model: nn.Module, rt: EconRuntime, batch: dict[str, torch.Tensor]) -> float:
    """CE of ``batch`` with every edge open (dense attention), as :func:`_deterministic_ce`."""
    with rt.override(mode="dense"):
        return _deterministic_ce(model, rt, batch)


@dataclass
class _Run:
    """What the phases of one run share: the prepared run, its objective, engines, hooks, shard."""

    cfg: RunConfig
    p: Prepared
    objective: Objective
    make_engine: EngineFactory
    hooks: RunHooks
    shard: tuple[int, int]
    state: RunState
    distiller: Distiller | None = None  # the main phase's teacher, when objective.distill is on

    @property
    def eval_bs(self) -> int:
        return max(self.cfg.training.batch_size, 64)

    def to_dev(self, idx: torch.Tensor, split: EncodedSplit) -> dict[str, torch.Tensor]:
        return {k: v.to(self.p.device) for k, v in split.batch(idx).items()}

    @property
    def kl_constrained(self) -> bool:
        """Whether the objective constrains the KL to the teacher (``objective.constrain: kl``)."""
        return self.cfg.objective.constrain == "kl" and self.distiller is not None

    def teacher_kl(self, split: EncodedSplit, idx: torch.Tensor | None = None) -> float:
        """Mean KL(teacher || model) of ``split`` (of its rows ``idx``), the model's gates deterministic."""
        assert self.distiller is not None
        p, bs = self.p, self.eval_bs
        rows = torch.arange(len(split)) if idx is None else idx
        batches = (self.to_dev(rows[i : i + bs], split) for i in range(0, len(rows), bs))
        return _deterministic_kl(p.model, p.runtime, self.distiller.teacher, batches, p.task.kind)

    def evaluate(self, split: EncodedSplit, *, distribution: bool = False) -> Record:
        """Every metric of ``split`` in eval mode; with ``objective.constrain: kl`` in the main phase, also
        ``kl_teacher``, the mean KL(teacher || model)."""
        p = self.p
        ev = evaluate(
            p.model,
            p.runtime,
            split,
            p.task,
            batch_size=self.eval_bs,
            seq_len=self.cfg.data.max_length,
            distribution=distribution,
        )
        if self.kl_constrained:
            ev["kl_teacher"] = self.teacher_kl(split)
        return ev

    def checkpoint(self, engine: Engine, objective: ObjectiveState) -> None:
        assert self.hooks.on_checkpoint is not None
        self.hooks.on_checkpoint(
            TrainState(
                run=self.state.copy(),
                model=self.p.model.state_dict(),
                engine=engine.state_dict(),
                rng=rng_state(),
                objective=objective,
                teacher=self.distiller.teacher.state_dict() if self.distiller is not None else None,
            )
        )


def _restore(engine: Engine, batches: Iterator[torch.Tensor], resume: TrainState) -> None:
    """Go on from ``resume`` in its phase: the data order fast-forwarded, then optimiser and RNG."""
    fast_forward(batches, resume.step)  # the same data order as an uninterrupted run
    if resume.engine is not None:
        engine.load_state_dict(resume.engine)
    if resume.rng is not None:
        set_rng_state(resume.rng)


def _dense_steps(cfg: RunConfig) -> int:
    o = cfg.objective
    return o.dense_steps if o.dense_reference == "warmup" else 0


def _dense_phase(run: _Run, resume: TrainState | None) -> None:
    """Train the dense model for ``objective.dense_steps`` (resuming inside this phase if so saved)."""
    t, p, rs = run.cfg.training, run.p, run.state
    model, rt = p.model, p.runtime
    dense_steps = _dense_steps(run.cfg)
    rt.set_mode("dense")
    rt.need_costs = False
    if not dense_steps or rs.phase != "dense":
        return
    start = 0
    if resume is not None:
        model.load_state_dict(resume.model)
        start = resume.step
    engine = run.make_engine(model, dense_steps, "dense")
    batches = _batches(len(p.train), t.batch_size, t.seed, run.shard)
    if resume is not None:
        _restore(engine, batches, resume)
    bar = _progress(t.progress, dense_steps, "dense")
    if bar and start:
        bar.update(start)
    model.train()
    for step in range(start, dense_steps):
        loss = _forward_loss(engine.module, run.to_dev(next(batches), p.train))
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"training diverged in the dense phase: loss is {float(loss.detach())} at step {step}"
            )
        engine.backward(loss)
        engine.step()
        rs.step = step + 1
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if run.hooks.checkpoint_due(step + 1, dense_steps):
            run.checkpoint(engine, ObjectiveState())
    if bar:
        bar.close()


def _dense_reference(run: _Run, resume: TrainState | None) -> None:
    """CE_dense (held-out) and the dense validation metric; from the checkpoint when resuming in the main phase."""
    p, rs = run.p, run.state
    if rs.phase == "main":
        assert resume is not None and rs.ce_dense is not None and rs.dense_metric is not None
        p.model.load_state_dict(resume.model)
        return
    p.model.eval()
    _, certify = heldout_parts(p.heldout)
    rs.ce_dense, _, _ = task_loss_and_outputs(p.model, certify, p.task, batch_size=run.eval_bs)
    dense_val = run.evaluate(p.validation)
    rs.dense_metric, rs.dense_validation_ce = dense_val["metric"], dense_val["ce"]
    rs.phase, rs.step = "main", 0


def _objective_env(run: _Run, steps: int) -> ObjectiveEnv:
    p = run.p
    assert run.state.ce_dense is not None
    drive, certify = heldout_parts(p.heldout)
    return ObjectiveEnv(
        model=p.model,
        ce_dense=run.state.ce_dense,
        ce_dense_validation=run.state.dense_validation_ce,
        evaluate_certify=lambda: run.evaluate(certify),
        heldout_ce=lambda idx: _deterministic_ce(p.model, p.runtime, run.to_dev(idx, drive)),
        heldout_batches=lambda size, skip: fast_forward(_cycle(len(drive), size), skip),
        dense_heldout_ce=lambda idx: _dense_ce(p.model, p.runtime, run.to_dev(idx, drive)),
        heldout_kl=(lambda idx: run.teacher_kl(drive, idx)) if run.distiller is not None else None,
        runtime=p.runtime,
        task=p.task,
        seq_len=run.cfg.data.max_length,
        steps=steps,
        calibration=p.train,
    )


def _main_phase(run: _Run, resume: TrainState | None) -> bool:
    """The configured attention mode under the objective, with validation and early stopping.
    Returns whether it stopped early."""
    cfg, p, rs, obj, hooks = run.cfg, run.p, run.state, run.objective, run.hooks
    t, a = cfg.training, cfg.attention
    model, rt = p.model, p.runtime
    # top-k and budget are inference-time rules (no retraining): train dense, apply them at evaluation
    rt.set_mode(a.mode if a.mode in ("dense", "gates") else "dense")
    if cfg.objective.distill.enabled:
        # the teacher is the dense reference model (saved with every main-phase checkpoint)
        teacher = make_teacher(model)
        if resume is not None and resume.phase == "main":
            if resume.teacher is None:
                raise ValueError(
                    "the checkpoint has no distillation teacher: it was saved by a run that did not distil"
                )
            teacher.load_state_dict(resume.teacher)
        run.distiller = Distiller(teacher, cfg.objective.distill, p.task.kind)
    steps = _steps_for(cfg, len(p.train), run.shard[1])
    obj.start(_objective_env(run, steps))
    _record_costs(rt, obj.costs)
    engine = run.make_engine(model, steps, "main")
    sign = 1.0 if higher_is_better(p.task.metric_name) else -1.0
    batches = _batches(len(p.train), t.batch_size, t.seed + 1, run.shard)
    start = rs.step
    if resume is not None and resume.phase == "main":
        obj.load_state_dict(resume.objective, step=start)
        _restore(engine, batches, resume)
    else:
        rs.history.extend(obj.initial_records())

    bar = _progress(t.progress, steps, a.mode)
    if bar and start:
        bar.update(start)
    model.train()
    for step in range(start + 1, steps + 1):
        idx = next(batches)
        rec: Record = {"step": step, **obj.before_step(step)}
        if obj.per_step_field is not None:
            rs.multiplier_history.append(rec[obj.per_step_field])
        batch = run.to_dev(idx, p.train)
        if run.distiller is None:
            loss_task = _forward_loss(engine.module, batch)
        else:
            # the teacher runs on its own runtime (a copy): the student's costs stay as recorded
            out = engine.module(**batch, output_hidden_states=run.distiller.needs_hidden)
            loss_task, kd_fields = run.distiller.loss(out, batch)
            rec.update(kd_fields, ce_task=float(out.loss.detach()))
        loss, fields = obj.loss(loss_task, *rt.pop_costs())
        rec.update(fields)
        if not torch.isfinite(loss):
            # stop at once: a non-finite loss would poison every parameter at the next step
            raise DivergenceError(f"training diverged: loss is {float(loss.detach())} at step {step}")
        engine.backward(loss)
        engine.step()
        rec.update(obj.after_step(step))
        rs.step = step
        rec.update(loss=float(loss.detach()), task_loss=float(loss_task.detach()), lr=engine.lr)
        if hooks.on_step:
            hooks.on_step(rec)
        if bar:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in rec.items() if k in ("task_loss", "cost", "multiplier")})
        if step % t.eval_every == 0 or step == steps:
            ev = run.evaluate(p.validation)
            erec = {
                "step": step,
                **{
                    k: ev[k]
                    for k in ("metric", "ce", "attention_density", "ffn_density", "static_gflops", "effective_gflops")
                },
                **({"kl_teacher": ev["kl_teacher"]} if "kl_teacher" in ev else {}),
            }
            erec.update(obj.on_eval(step))
            rs.history.append(erec)
            if hooks.on_eval:
                hooks.on_eval(erec)
            score = sign * ev["metric"]
            if score > rs.best_score + 1e-9:
                rs.best_score, rs.bad_evals = score, 0
            else:
                rs.bad_evals += 1
            patience = t.early_stopping_patience
            if obj.early_stopping and patience and rs.bad_evals >= patience:
                if bar:
                    bar.close()
                return True
            model.train()
        if hooks.checkpoint_due(step, steps):
            run.checkpoint(engine, obj.state_dict())
    if bar:
        bar.close()
    return False


def _final(run: _Run, stopped_early: bool) -> RunResult:
    """Final evaluation in the configured mode (every metric of METHOD section 5) and the summary."""
    cfg, p, rs, obj = run.cfg, run.p, run.state, run.objective
    t, o, a = cfg.training, cfg.objective, cfg.attention
    task = p.task
    obj.finish()
    p.runtime.set_mode(a.mode, k=a.k, budget=a.budget)
    p.model.eval()  # deterministic gates for ce_heldout too (evaluate restores the training flag it found)
    final = run.evaluate(p.validation, distribution=True)
    ce_heldout, _, _ = task_loss_and_outputs(p.model, p.heldout, task, batch_size=run.eval_bs)
    steps = _steps_for(cfg, len(p.train), run.shard[1])
    restarts = rs.restarts
    summary: Record = {
        "task": task.name,
        "task_kind": task.kind,
        "num_labels": task.num_labels,
        "vocab_size": len(p.tokenizer),
        **final,
        "ce_heldout": ce_heldout,
        "ce_dense": rs.ce_dense,
        "dense_metric": rs.dense_metric,
        "ce_dense_validation": rs.dense_validation_ce,
        "lam": o.lam,
        "alpha": o.alpha,
        "beta": o.beta,
        # the objective's fields (below), None where they do not apply
        "tau": None,
        "tau_rel": None,
        "objective": o.kind,
        "method": o.kind,  # what made the model (an objective, or a baseline's pruning rule)
        "distill_weight": o.distill.weight,
        "distill_layerwise": o.distill.layerwise,
        "target_ratio": None,
        "target_gflops": None,
        "attention": a.mode,
        "k": a.k,
        "budget": a.budget,
        "multiplier": None,
        "feasible": None,
        "steps": rs.step if steps else 0,
        "dense_steps": _dense_steps(cfg),
        "stopped_early": stopped_early,
        "restarts": len(restarts),
        "resumed_from_step": restarts[-1]["step"] if restarts else None,
        "resumed_from_phase": restarts[-1]["phase"] if restarts else None,
        "seed": t.seed,
        "model": cfg.model.name,
    }
    summary.update(obj.summary(rs.multiplier_history, final))  # keeps the places above; its own fields go last
    return RunResult(summary, p, rs.history, rs.multiplier_history)


def train_run(
    cfg: RunConfig,
    *,
    engine_factory: EngineFactory | None = None,
    hooks: RunHooks | None = None,
    shard: tuple[int, int] = (0, 1),
    prepared: Prepared | None = None,
    resume: TrainState | None = None,
) -> RunResult:
    """Train one point of the config and evaluate it. See the module docstring for the phases."""
    p = prepared or prepare(cfg)
    if resume is not None:
        state = resume.run.copy()
        state.restarts.append({"phase": resume.phase, "step": resume.step})
    else:
        state = RunState()
    run = _Run(
        cfg=cfg,
        p=p,
        objective=make_objective(cfg.objective),
        make_engine=engine_factory or _default_engine(cfg),
        hooks=hooks or RunHooks(),
        shard=shard,
        state=state,
    )
    _dense_phase(run, resume)
    _dense_reference(run, resume)
    stopped_early = _main_phase(run, resume)
    return _final(run, stopped_early)


def train_dense(cfg: RunConfig, *, prepared: Prepared | None = None) -> RunResult:
    """Only the dense phase of ``cfg`` (``objective.dense_steps`` of plain AdamW in this process) and
    its evaluation: the shared start of a search's trials (``search.dense_start: shared``, see
    ``econ_ray.search.dense_start``). The summary has the dense model's validation metrics, its
    held-out CE (``ce_dense``) and its FLOPs."""
    p = prepared or prepare(cfg)
    run = _Run(
        cfg=cfg,
        p=p,
        objective=make_objective(cfg.objective),
        make_engine=_default_engine(cfg),
        hooks=RunHooks(),
        shard=(0, 1),
        state=RunState(),
    )
    _dense_phase(run, None)
    _dense_reference(run, None)
    p.model.eval()
    final = run.evaluate(p.validation, distribution=True)
    summary: Record = {
        "task": p.task.name,
        "task_kind": p.task.kind,
        "num_labels": p.task.num_labels,
        "vocab_size": len(p.tokenizer),
        **final,
        "ce_dense": run.state.ce_dense,
        "dense_metric": run.state.dense_metric,
        "dense_steps": _dense_steps(cfg),
        "seed": cfg.training.seed,
        "model": cfg.model.name,
    }
    return RunResult(summary, p)
