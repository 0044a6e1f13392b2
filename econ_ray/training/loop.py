"""One training run, shaped to run unchanged inside a Ray Train worker.

``train_run(cfg)`` builds data, tokenizer and model, installs econ-ray attention, then runs:

1. a dense phase (``objective.dense_steps``, skipped when ``dense_reference: model``) that trains
   the dense model, whose held-out CE is CE_dense (the reference of ``tau_rel``);
2. the main phase in the configured attention mode under the penalised or constrained objective,
   with validation every ``eval_every`` steps and early stopping on the validation metric (the
   constrained objective's multiplier reads held-out CE every ``objective.constraint_every`` steps);
3. a final evaluation computing every metric of METHOD section 5 and the FLOPs of section 6.

The optimiser comes from an ``engine_factory`` (plain AdamW by default, DeepSpeed in a Ray Train
worker); ``on_step`` and ``on_eval`` receive records for trackers; ``shard`` = (rank, world size)
splits the training batches between data-parallel workers.

With ``checkpoint_every`` = N and ``on_checkpoint``, the run hands a :class:`TrainState` (weights,
optimiser, multiplier, RNG, histories) to ``on_checkpoint`` every N steps of either phase; a run
given ``resume=`` such a state goes on from its phase and step (the data order is fast-forwarded,
the dense phase is not redone once the main phase has begun) and lists the restart in
``summary["restarts"]`` / ``summary["resumed_from_step"]``.
"""

from __future__ import annotations

import copy
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from econ_ray.attention.runtime import EconRuntime, install
from econ_ray.config.schema import RunConfig
from econ_ray.data import EncodedSplit, TaskSpec, encode_split, load_task
from econ_ray.metrics.task import higher_is_better
from econ_ray.modeling import build_model, build_tokenizer
from econ_ray.objectives import LagrangeController, penalised_loss, relative_tau
from econ_ray.training.checkpoint import TrainState, rng_state, set_rng_state
from econ_ray.training.engine import Engine, TorchEngine
from econ_ray.training.evaluate import evaluate, task_loss_and_outputs

# (model, steps of the phase, phase name "dense" | "main") -> Engine. ``engine.module`` is what the
# training forward calls (the model itself, or a DeepSpeed engine around it); evaluation, snapshots
# and saving use the model directly.
EngineFactory = Callable[[nn.Module, int, str], Engine]
Record = dict[str, Any]


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
    history: list[Record] = field(default_factory=list)
    multiplier_history: list[float] = field(default_factory=list)
    prepared: Prepared | None = None


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
    splits = load_task(
        d.source,
        columns=d.columns,
        kind=d.kind,
        train_size=d.train_size,
        eval_size=d.eval_size,
        heldout_fraction=d.heldout_fraction,
        seed=cfg.training.seed,
        builtin_options=d.builtin,
    )
    texts = [
        t
        for ex in splits.train + splits.validation + splits.heldout
        for t in (ex.get("text"), ex.get("text_pair"))
        if t
    ]
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
        name: encode_split(getattr(splits, name), splits.task, tokenizer, d.max_length)
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


def _cycle(n: int, batch_size: int) -> Iterator[torch.Tensor]:
    while True:
        for start in range(0, n, batch_size):
            yield torch.arange(start, min(start + batch_size, n))


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
        )

    return make


def _progress(enabled: bool | None, total: int, desc: str):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def _forward_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch)
    return out.loss


def constraint_step(step: int, every: int) -> bool:
    """Whether main-phase step ``step`` (1-based) measures the held-out CE and moves the multiplier:
    steps 1, 1 + every, 1 + 2 every, ... (the first step always has a measured multiplier)."""
    return (step - 1) % every == 0


def constraint_updates(steps: int, every: int) -> int:
    """How many multiplier updates steps 1..``steps`` made (held-out batches they consumed)."""
    return (steps + every - 1) // every


def _deterministic_ce(model: nn.Module, rt: EconRuntime, batch: dict[str, torch.Tensor]) -> float:
    """CE of ``batch`` under deterministic gates, no autograd state and no cost terms (nothing reads
    them: the primal forward records its own), then back to training mode."""
    need_costs, rt.need_costs = rt.need_costs, False
    model.eval()
    try:
        with torch.no_grad():
            return float(_forward_loss(model, batch))
    finally:
        model.train()
        rt.need_costs = need_costs


def train_run(
    cfg: RunConfig,
    *,
    engine_factory: EngineFactory | None = None,
    on_step: Callable[[Record], None] | None = None,
    on_eval: Callable[[Record], None] | None = None,
    shard: tuple[int, int] = (0, 1),
    prepared: Prepared | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    resume: TrainState | None = None,
) -> RunResult:
    """Train one point of the config and evaluate it. See the module docstring for the phases."""
    p = prepared or prepare(cfg)
    make_engine = engine_factory or _default_engine(cfg)
    t, o, a = cfg.training, cfg.objective, cfg.attention
    model, rt, task, dev = p.model, p.runtime, p.task, p.device
    L = cfg.data.max_length
    history: list[Record] = []
    mu_history: list[float] = []
    restarts: list[dict[str, Any]] = list(resume.meta.get("restarts", [])) if resume else []
    if resume is not None:
        restarts.append({"phase": resume.phase, "step": resume.step})
    every = checkpoint_every if (checkpoint_every and on_checkpoint) else 0

    def state(phase: str, step: int, engine: Engine, **meta: Any) -> TrainState:
        return TrainState(
            phase=phase,
            step=step,
            model=model.state_dict(),
            engine=engine.state_dict(),
            rng=rng_state(),
            meta={"restarts": restarts, **meta},
        )

    def to_dev(idx: torch.Tensor, split: EncodedSplit) -> dict[str, torch.Tensor]:
        return {k: v.to(dev) for k, v in split.batch(idx).items()}

    # ---- phase 1: dense ------------------------------------------------------------------
    dense_steps = o.dense_steps if o.dense_reference == "warmup" else 0
    rt.set_mode("dense")
    rt.need_costs = False
    in_main = resume is not None and resume.phase == "main"
    if dense_steps and not in_main:
        start = 0
        if resume is not None:  # resume.phase == "dense"
            model.load_state_dict(resume.model)
            start = resume.step
        engine = make_engine(model, dense_steps, "dense")
        batches = _batches(len(p.train), t.batch_size, t.seed, shard)
        for _ in range(start):  # the same data order as an uninterrupted run
            next(batches)
        if resume is not None:
            if resume.engine is not None:
                engine.load_state_dict(resume.engine)
            if resume.rng is not None:
                set_rng_state(resume.rng)
        bar = _progress(t.progress, dense_steps, "dense")
        if bar and start:
            bar.update(start)
        model.train()
        for step in range(start, dense_steps):
            loss = _forward_loss(engine.module, to_dev(next(batches), p.train))
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"training diverged in the dense phase: loss is {float(loss.detach())} at step {step}"
                )
            engine.backward(loss)
            engine.step()
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss):.3f}")
            if every and (step + 1) % every == 0 and step + 1 < dense_steps:
                on_checkpoint(state("dense", step + 1, engine))
        if bar:
            bar.close()
    if in_main:
        model.load_state_dict(resume.model)
        ce_dense_heldout = float(resume.meta["ce_dense"])
        dense_eval = {"metric": float(resume.meta["dense_metric"])}
    else:
        model.eval()
        ce_dense_heldout, _, _ = task_loss_and_outputs(model, p.heldout, task, batch_size=max(t.batch_size, 64))
        dense_eval = evaluate(
            model, rt, p.validation, task, batch_size=max(t.batch_size, 64), seq_len=L, distribution=False
        )

    # ---- phase 2: the configured mode and objective -------------------------------------------
    # top-k and budget are inference-time rules (no retraining): train dense, apply them at evaluation
    train_mode = a.mode if a.mode in ("dense", "gates") else "dense"
    rt.set_mode(train_mode)
    constrained = o.kind == "constrained"
    tau: float | None = None
    controller: LagrangeController | None = None
    if constrained:
        tau = o.tau if o.tau is not None else relative_tau(ce_dense_heldout, o.tau_rel or 0.0)
        m = o.multiplier
        controller = LagrangeController(tau, lr=m.lr, kp=m.kp, ki=m.ki, init=m.init)
    rt.need_costs = constrained or (o.lam > 0 and (o.alpha > 0 or o.beta > 0))
    world = shard[1]
    steps = _steps_for(cfg, len(p.train), world)
    engine = make_engine(model, steps, "main")
    sign = 1.0 if higher_is_better(task.metric_name) else -1.0
    best_score, bad_evals = -math.inf, 0
    best_feasible: tuple[float, dict[str, torch.Tensor]] | None = None
    heldout_batches = _cycle(len(p.heldout), o.constraint_batch_size)
    eval_bs = max(t.batch_size, 64)

    def check_feasible(step: int) -> Record:
        """Held-out CE and density with deterministic gates; snapshot if it meets the ceiling."""
        nonlocal best_feasible
        ev = evaluate(model, rt, p.heldout, task, batch_size=eval_bs, seq_len=L, distribution=False)
        if ev["ce"] <= tau and (best_feasible is None or ev["attention_density"] <= best_feasible[0]):
            best_feasible = (ev["attention_density"], copy.deepcopy(model.state_dict()))
        return {
            "step": step,
            "heldout_ce": ev["ce"],
            "heldout_density": ev["attention_density"],
            "feasible": ev["ce"] <= tau,
        }

    batches = _batches(len(p.train), t.batch_size, t.seed + 1, shard)
    start = 0
    if in_main:
        start = resume.step
        m = resume.meta
        history, mu_history = list(m.get("history", [])), [float(x) for x in m.get("mu_history", [])]
        best_score, bad_evals = float(m.get("best_score", -math.inf)), int(m.get("bad_evals", 0))
        best_feasible = resume.best_feasible
        if controller is not None and resume.controller is not None:
            controller.load_state_dict(resume.controller)
        if resume.engine is not None:
            engine.load_state_dict(resume.engine)
        for _ in range(start):  # the same data as an uninterrupted run
            next(batches)
        if controller is not None:  # and the same held-out batches
            for _ in range(constraint_updates(start, o.constraint_every)):
                next(heldout_batches)
        if resume.rng is not None:
            set_rng_state(resume.rng)
    elif constrained:
        history.append(check_feasible(0))  # the starting point may already meet the ceiling

    def main_state(step: int) -> TrainState:
        st = state(
            "main",
            step,
            engine,
            history=history,
            mu_history=mu_history,
            best_score=best_score,
            bad_evals=bad_evals,
            ce_dense=ce_dense_heldout,
            dense_metric=dense_eval["metric"],
        )
        st.controller = controller.state_dict() if controller is not None else None
        st.best_feasible = best_feasible
        return st

    bar = _progress(t.progress, steps, a.mode)
    if bar and start:
        bar.update(start)
    model.train()
    stopped_early = False
    step = start
    for step in range(start + 1, steps + 1):
        idx = next(batches)
        rec: Record = {"step": step}
        if controller is not None:
            if constraint_step(step, o.constraint_every):
                # drive mu with the CE of deterministic gates on held-out data, measured before the update
                ce_det = _deterministic_ce(model, rt, to_dev(next(heldout_batches), p.heldout))
                controller.update(ce_det)
                rec["constraint_ce"] = ce_det
            rec["multiplier"] = controller.value  # held between updates; the history has the mu each step used
            mu_history.append(rec["multiplier"])
        loss_task = _forward_loss(engine.module, to_dev(idx, p.train))
        attn_costs, ffn_costs = rt.pop_costs()
        if constrained:
            attn_cost = torch.stack(attn_costs).mean()
            loss = controller.lagrangian(attn_cost, loss_task)
            rec["cost"] = float(attn_cost.detach())
        elif rt.need_costs:
            loss, cost = penalised_loss(loss_task, attn_costs, ffn_costs, lam=o.lam, alpha=o.alpha, beta=o.beta)
            rec["cost"] = float(cost.detach())
        else:
            loss = loss_task
        if not torch.isfinite(loss):
            # stop at once: a non-finite loss would poison every parameter at the next step
            raise DivergenceError(f"training diverged: loss is {float(loss.detach())} at step {step}")
        engine.backward(loss)
        engine.step()
        rec.update(loss=float(loss.detach()), task_loss=float(loss_task.detach()), lr=engine.lr)
        if on_step:
            on_step(rec)
        if bar:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in rec.items() if k in ("task_loss", "cost", "multiplier")})
        if step % t.eval_every == 0 or step == steps:
            ev = evaluate(model, rt, p.validation, task, batch_size=eval_bs, seq_len=L, distribution=False)
            erec = {
                "step": step,
                **{k: ev[k] for k in ("metric", "ce", "attention_density", "ffn_density", "effective_gflops")},
            }
            if constrained:
                erec.update(check_feasible(step))
            history.append(erec)
            if on_eval:
                on_eval(erec)
            score = sign * ev["metric"]
            if score > best_score + 1e-9:
                best_score, bad_evals = score, 0
            else:
                bad_evals += 1
            if not constrained and t.early_stopping_patience and bad_evals >= t.early_stopping_patience:
                stopped_early = True
                break
            model.train()
        if every and step % every == 0 and step < steps:
            on_checkpoint(main_state(step))
    if bar:
        bar.close()

    # ---- final evaluation ----------------------------------------------------------------
    feasible = None
    if constrained:
        feasible = best_feasible is not None
        if best_feasible is not None:
            model.load_state_dict(best_feasible[1])  # the sparsest snapshot that met the ceiling
    rt.set_mode(a.mode, k=a.k, budget=a.budget)
    model.eval()  # deterministic gates for ce_heldout too (evaluate restores the training flag it found)
    final = evaluate(model, rt, p.validation, task, batch_size=eval_bs, seq_len=L)
    ce_heldout, _, _ = task_loss_and_outputs(model, p.heldout, task, batch_size=eval_bs)
    summary: Record = {
        "task": task.name,
        "task_kind": task.kind,
        "num_labels": task.num_labels,
        "vocab_size": len(p.tokenizer),
        **final,
        "ce_heldout": ce_heldout,
        "ce_dense": ce_dense_heldout,
        "dense_metric": dense_eval["metric"],
        "lam": o.lam,
        "alpha": o.alpha,
        "beta": o.beta,
        "tau": tau,
        "tau_rel": o.tau_rel if constrained else None,
        "objective": o.kind,
        "attention": a.mode,
        "k": a.k,
        "budget": a.budget,
        "multiplier": mu_history[-1] if mu_history else None,
        "feasible": feasible,
        "steps": step if steps else 0,
        "dense_steps": dense_steps,
        "stopped_early": stopped_early,
        "restarts": len(restarts),
        "resumed_from_step": restarts[-1]["step"] if restarts else None,
        "resumed_from_phase": restarts[-1]["phase"] if restarts else None,
        "seed": t.seed,
        "model": cfg.model.name,
    }
    return RunResult(summary, history, mu_history, p)
