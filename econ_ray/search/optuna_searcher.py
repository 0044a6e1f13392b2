"""A Ray Tune ``Searcher`` over an Optuna study, multi-objective *with constraints*.

Ray's ``OptunaSearch`` takes several metrics but passes no constraints to Optuna. This adapter asks
the study directly (``study.ask``/``study.tell``), sets each trial's constraint values with
``Trial.set_constraint`` (Optuna 5's API, which every sampler and ``best_trials`` read; feasible when
every value is <= 0) and names the two objectives (``study.set_metric_names``, which optuna-dashboard
shows), and tells Optuna only *complete* results: a failed trial, or one a
scheduler stopped early, is told as FAIL/PRUNED so a partial result never counts as a finished one.
The study lives in durable storage (SQLite by default) so ``optuna-dashboard`` can open it and a
search can resume.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypedDict

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from econ_ray.config.schema import SearchSpace
from econ_ray.search.space import distributions, grid

ConstraintFn = Callable[[dict[str, Any]], float]


class _StudyArgs(TypedDict):
    """The ``optuna.create_study`` arguments the searcher keeps to reopen its study."""

    storage: str
    study_name: str
    directions: list[Literal["maximize", "minimize"]]
    sampler: optuna.samplers.BaseSampler
    load_if_exists: bool


# Optuna's own defaults for the random start-up phase: TPE and GP model the front only after
# n_startup_trials=10 finished trials; NSGA-II's first generation (population_size=50) is random.
OPTUNA_STARTUP_DEFAULT = {"tpe": 10, "gp": 10, "nsga2": 50}
MIN_STARTUP = 3


def startup_trials(name: str, n_trials: int) -> int:
    """Random start-up trials of sampler ``name`` for a budget of ``n_trials``.

    About a third of the budget, at least ``MIN_STARTUP`` (a model of a 2-objective front from
    fewer points is a guess), at most Optuna's default. Optuna's defaults (10 for TPE and GP, a
    first generation of 50 for NSGA-II) assume hundreds of trials: with econ-ray's typical budget
    of 8 they never leave the random phase and behave exactly like ``random``. Budget 8 -> 3,
    12 -> 4, 30 -> 10; for large budgets TPE and GP keep Optuna's 10 and NSGA-II its 50."""
    return min(OPTUNA_STARTUP_DEFAULT[name], max(MIN_STARTUP, math.ceil(n_trials / 3)))


def make_sampler(name: str, *, seed: int, space: SearchSpace, n_trials: int) -> optuna.samplers.BaseSampler:
    """tpe (multi-objective TPE, default), nsga2, gp, random, or grid (:func:`~econ_ray.search.space.grid`: lambda
    on a log grid, or the target evenly).

    The random start-up phase of tpe and gp (``n_startup_trials``) and NSGA-II's population (its
    first generation is random) follow the budget: ``startup_trials(name, n_trials)``. Optuna
    counts the start-up over finished trials of the study (TPE: complete + pruned; GP: complete;
    NSGA-II: a generation ends when ``population_size`` trials of it are complete), so a resumed
    search, which reopens the study and passes the original budget, goes on where it stopped.
    Constraints need no sampler argument: tpe, nsga2 and gp read the values ``Trial.set_constraint``
    stored.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup_trials(name, n_trials))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=startup_trials(name, n_trials))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(name, n_trials))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        # the grid points are enqueued by the searcher (Optuna's GridSampler calls study.stop(),
        # which only works inside study.optimize); anything beyond the grid is sampled at random
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; expected tpe, nsga2, gp, random or grid")


def _grid_distribution(space: SearchSpace, n_trials: int) -> dict[str, optuna.distributions.BaseDistribution]:
    """The one knob the grid searches, over its points (lambda log-scaled)."""
    knob, points = grid(space, n_trials)
    log = knob == "lam" or bool(getattr(space, knob).log)
    return {knob: optuna.distributions.FloatDistribution(min(points), max(points), log=log)}


def constraint_name(c: ConstraintFn) -> str:
    """The name a constraint has in the study (``constraints:NAME``): the function's name."""
    return getattr(c, "__name__", "constraint")


class ConstrainedOptunaSearch(Searcher):
    """Suggests knob values from an Optuna study; tells it (metric, effective GFLOPs) and constraints."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        sampler: str,
        seed: int,
        n_trials: int,
        storage: str,
        study_name: str,
        maximize_metric: bool = True,
        constraints: Sequence[ConstraintFn] = (),
        objective_keys: tuple[str, str] = ("metric", "effective_gflops"),
        metric_names: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(metric=None, mode=None)
        self.space = space
        self.sampler_name = sampler
        self.dists: dict[str, optuna.distributions.BaseDistribution] = (
            distributions(space) if sampler != "grid" else _grid_distribution(space, n_trials)
        )
        self.constraints = list(constraints)
        self.objective_keys = objective_keys
        self._study_args = _StudyArgs(
            storage=storage,
            study_name=study_name,
            directions=["maximize" if maximize_metric else "minimize", "minimize"],
            sampler=make_sampler(sampler, seed=seed, space=space, n_trials=n_trials),
            load_if_exists=True,
        )
        self.study = optuna.create_study(**self._study_args)
        names = list(metric_names or objective_keys)
        if self.study.metric_names != names:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since; users need not see it
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(names)
        n_old = len(self.study.trials)
        if n_old:
            # a resumed study: a sampler seeded as before would draw its first (random start-up)
            # points again; seed it past the trials already in the study instead
            self._study_args["sampler"] = make_sampler(sampler, seed=seed + n_old, space=space, n_trials=n_trials)
            self.study.sampler = self._study_args["sampler"]
        if sampler == "grid" and not n_old:
            knob, points = grid(space, n_trials)
            for value in points:
                self.study.enqueue_trial({knob: value})
        self._live: dict[str, optuna.Trial] = {}  # Tune trial id -> running Optuna trial

    # Tune pickles its search algorithm with the experiment state; the study (a database
    # connection) is reopened from its durable storage instead of being pickled.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["study"] = None
        state["_live"] = {tid: t.number for tid, t in self._live.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.study = optuna.create_study(**self._study_args)
        self._live = {
            tid: optuna.Trial(
                self.study, self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, n)
            )
            for tid, n in state["_live"].items()
        }

    # -- Searcher API ------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # objectives are fixed: (metric, effective_gflops)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self.study.ask(self.dists)
        trial.set_user_attr("tune_trial_id", trial_id)
        self._live[trial_id] = trial
        return {"knobs": dict(trial.params), "optuna_trial": trial.number}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self._live.pop(trial_id, None)
        if trial is not None:
            self.tell(trial, result, error=error)

    # -- telling Optuna -------------------------------------------------------------------------------
    def tell(self, trial: optuna.Trial, result: dict | None, *, error: bool = False) -> None:
        """Tell a finished trial: complete results with constraints; anything partial as FAIL/PRUNED."""
        if error or not result:
            self.study.tell(trial, state=TrialState.FAIL)
            return
        if not result.get("final"):
            # stopped by a scheduler before its final evaluation: not a complete result
            self.study.tell(trial, state=TrialState.PRUNED)
            return
        values = [float(result[k]) for k in self.objective_keys]
        if not all(math.isfinite(v) for v in values):
            self.study.tell(trial, state=TrialState.FAIL)
            return
        for c in self.constraints:
            trial.set_constraint(constraint_name(c), float(c(result)))
        self.study.tell(trial, values)

    def save(self, checkpoint_path: str) -> None:  # the study is already durable in its storage
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass
