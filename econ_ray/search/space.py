"""The searched knobs: Optuna distributions from the file's ranges, the lambda grid, and how a
sampled point becomes a run config."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from econ_ray.config.schema import RunConfig, SearchSpace, SearchSpaceFile

if TYPE_CHECKING:
    import optuna

KNOBS = ("lam", "alpha", "beta", "tau", "tau_rel", "target_ratio", "target_gflops", "gate_lr", "gate_bias_init")


def distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """One Optuna distribution per knob that has a range (lam is log-uniform when ``log``)."""
    import optuna  # here, not at module level: Ray Train workers import this module and never need Optuna

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name in KNOBS:
        r = getattr(space, name)
        if r is not None:
            out[name] = optuna.distributions.FloatDistribution(r.low, r.high, log=r.log)
    if space.objective:
        out["objective"] = optuna.distributions.CategoricalDistribution(list(space.objective))
    if space.prune_method:
        out["prune_method"] = optuna.distributions.CategoricalDistribution(list(space.prune_method))
    if space.drive_reference:
        out["drive_reference"] = optuna.distributions.CategoricalDistribution(list(space.drive_reference))
    if not out:
        raise ValueError("search.space gives no range: nothing to search")
    return out


def lam_grid(space: SearchSpace, n: int) -> list[float]:
    """The paper's baseline: ``n`` values of lambda evenly spaced on a log scale over the lam range."""
    r = space.lam
    if r is None:
        raise ValueError(
            "the grid sampler searches lam, target_ratio or target_gflops: search.space needs a range for one"
        )
    low = r.low if r.low > 0 else r.high * 1e-4
    if n == 1:
        return [math.sqrt(low * r.high)]
    step = (math.log(r.high) - math.log(low)) / (n - 1)
    return [math.exp(math.log(low) + i * step) for i in range(n)]


GRID_KNOBS = ("lam", "target_ratio", "target_gflops")


def grid(space: SearchSpace, n: int) -> tuple[str, list[float]]:
    """The grid sampler's knob and its ``n`` points: lambda on a log scale (:func:`lam_grid`) when
    ``search.space.lam`` has a range, else the targeted objective's target, evenly spaced from the
    range's low to its high end (log-spaced when the range says ``log``), so a targeted search asks
    each trial for a different budget and the budgets span the range."""
    if space.lam is not None:
        return "lam", lam_grid(space, n)
    for name in GRID_KNOBS[1:]:
        r = getattr(space, name)
        if r is None:
            continue
        if n == 1:
            return name, [math.sqrt(r.low * r.high) if r.log else (r.low + r.high) / 2]
        if r.log:
            step = (math.log(r.high) - math.log(r.low)) / (n - 1)
            return name, [math.exp(math.log(r.low) + i * step) for i in range(n)]
        return name, [r.low + i * (r.high - r.low) / (n - 1) for i in range(n)]
    return "lam", lam_grid(space, n)  # raises: no knob the grid can search


def trial_config(cfg: SearchSpaceFile | RunConfig, knobs: dict[str, Any]) -> RunConfig:
    """The run config of one trial: the file's run config with the sampled knobs set.

    This is the one road from a search-space file and a trial's knobs to what the trial trains: the
    trial function trains it, and the trial's MLflow params (:func:`trial_params`) and registry tags
    are read from it. A sampled ``tau`` replaces the file's ``tau_rel`` and the other way round; so do
    ``target_ratio`` and ``target_gflops``."""
    data = cfg.model_dump(exclude={"search", "distributed", "name"})
    obj = data["objective"]
    if "objective" in knobs:
        obj["kind"] = knobs["objective"]
    if "prune_method" in knobs:
        obj["prune_method"] = knobs["prune_method"]
    if "drive_reference" in knobs:
        obj["drive_reference"] = knobs["drive_reference"]
    if "gate_lr" in knobs:
        data["training"]["gate_lr"] = float(knobs["gate_lr"])
    if "gate_bias_init" in knobs:
        data["attention"]["gate_bias_init"] = float(knobs["gate_bias_init"])
    for name in ("lam", "alpha", "beta"):
        if name in knobs:
            obj[name] = float(knobs[name])
    if "tau" in knobs:
        obj["tau"], obj["tau_rel"] = float(knobs["tau"]), None
    if "tau_rel" in knobs:
        obj["tau_rel"], obj["tau"] = float(knobs["tau_rel"]), None
    if "target_ratio" in knobs:
        obj["target_ratio"], obj["target_gflops"] = float(knobs["target_ratio"]), None
    if "target_gflops" in knobs:
        obj["target_gflops"], obj["target_ratio"] = float(knobs["target_gflops"]), None
    return RunConfig.model_validate(data)


def trial_params(run: RunConfig) -> dict[str, Any]:
    """What a trial trained, as MLflow params and registry tags: the objective's knobs and kind and
    the attention mode, read from the trial's own :func:`trial_config`."""
    o = run.objective
    return {
        "lam": o.lam,
        "alpha": o.alpha,
        "beta": o.beta,
        "tau": o.tau,
        "tau_rel": o.tau_rel,
        "target_ratio": o.target_ratio,
        "target_gflops": o.target_gflops,
        "prune_method": o.prune_method if o.kind == "prune" else None,
        "objective": o.kind,
        "attention": run.attention.mode,
        "drive_reference": o.drive_reference if o.kind == "constrained" else None,
        "gate_lr": run.training.gate_lr if run.attention.mode == "gates" else None,
        "gate_bias_init": run.attention.gate_bias_init if run.attention.mode == "gates" else None,
    }
