"""The constrained Optuna searcher and the Pareto bookkeeping of the driver (real Optuna storage)."""

import optuna
import pytest

from econ_ray.config import parse_config
from econ_ray.search.optuna_searcher import ConstrainedOptunaSearch, make_sampler, startup_trials
from econ_ray.search.pareto import pareto_front
from econ_ray.search.records import TrialRecord, points_from
from econ_ray.search.results import make_constraints
from econ_ray.search.space import grid, lam_grid, trial_config


def _cfg(**search):
    return parse_config(
        {
            "attention": {"mode": "gates"},
            "search": {
                "space": {"lam": {"low": 0.01, "high": 10.0, "log": True}, "alpha": {"low": 0.0, "high": 1.0}},
                **search,
            },
        },
        "s.yaml",
    )


def _searcher(tmp_path, cfg, sampler="tpe", n=6):
    return ConstrainedOptunaSearch(
        cfg.search.space,
        sampler=sampler,
        seed=0,
        n_trials=n,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name="t",
        constraints=make_constraints(cfg, True),
    )


def test_constraint_reaches_optuna_and_infeasible_trial_is_not_best(tmp_path):
    cfg = _cfg(min_metric_vs_dense=1.0)  # metric >= dense - 1 point
    s = _searcher(tmp_path, cfg)
    a, _ = s.suggest("a"), s.suggest("b")
    assert set(a["knobs"]) == {"lam", "alpha"}
    # b dominates a on both objectives but breaks the constraint (0.80 < 0.90 - 0.01)
    s.on_trial_complete("a", {"final": 1, "metric": 0.895, "effective_gflops": 2.0, "dense_metric": 0.90})
    s.on_trial_complete("b", {"final": 1, "metric": 0.80, "effective_gflops": 1.0, "dense_metric": 0.90})
    trials = {t.user_attrs["tune_trial_id"]: t for t in s.study.trials}
    # Optuna 5's own record of constraints (Trial.set_constraint), named after the constraint
    assert trials["a"].constraints == {"metric_vs_dense": pytest.approx(-0.005)}
    assert trials["b"].constraints["metric_vs_dense"] > 0
    assert [t.user_attrs["tune_trial_id"] for t in s.study.best_trials] == ["a"]


def test_partial_and_failed_results_are_never_complete(tmp_path):
    s = _searcher(tmp_path, _cfg())
    for tid in ("stopped", "failed"):
        s.suggest(tid)
    s.on_trial_complete("stopped", {"final": 0, "metric": 0.99, "effective_gflops": 0.1})
    s.on_trial_complete("failed", None, error=True)
    states = {t.user_attrs["tune_trial_id"]: t.state for t in s.study.trials}
    assert states == {"stopped": optuna.trial.TrialState.PRUNED, "failed": optuna.trial.TrialState.FAIL}


def test_searcher_pickles_and_reopens_its_study(tmp_path):
    import pickle

    s = _searcher(tmp_path, _cfg())
    s.suggest("x")
    s2 = pickle.loads(pickle.dumps(s))
    s2.on_trial_complete("x", {"final": 1, "metric": 0.5, "effective_gflops": 1.0})
    assert s2.study.trials[0].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random", "grid"])
def test_every_sampler_suggests_in_range(tmp_path, name):
    cfg = _cfg()
    s = _searcher(tmp_path, cfg, sampler=name, n=4)
    for i in range(4):
        knobs = s.suggest(str(i))["knobs"]
        assert 0.01 - 1e-12 <= knobs["lam"] <= 10.0 + 1e-9
        s.on_trial_complete(str(i), {"final": 1, "metric": 0.5 + 0.01 * i, "effective_gflops": 1.0 + i})


def test_startup_trials_follow_the_budget():
    # a third of the budget, at least 3, at most Optuna's default (10 for tpe/gp, 50 for nsga2)
    assert [startup_trials("tpe", n) for n in (2, 6, 8, 9, 12, 30, 300)] == [3, 3, 3, 3, 4, 10, 10]
    assert [startup_trials("gp", n) for n in (8, 12, 300)] == [3, 4, 10]
    assert [startup_trials("nsga2", n) for n in (8, 12, 120, 300)] == [3, 4, 40, 50]


def _run(tmp_path, sampler, n_trials, k):
    """The knobs of the first k trials of a search with budget n_trials (each told a distinct result)."""
    s = ConstrainedOptunaSearch(
        _cfg().search.space,
        sampler=sampler,
        seed=0,
        n_trials=n_trials,
        storage=f"sqlite:///{tmp_path / f'{sampler}-{n_trials}.db'}",
        study_name="t",
    )
    out = []
    for i in range(k):
        out.append(s.suggest(str(i))["knobs"])
        s.on_trial_complete(str(i), {"final": 1, "metric": 0.5 + 0.1 * (i % 3), "effective_gflops": 1.0 + i})
    return out, s


@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_model_based_samplers_leave_the_random_phase_after_a_third_of_the_budget(tmp_path, name):
    random, _ = _run(tmp_path, "random", 9, 4)  # the start-up phase draws from RandomSampler(seed)
    small, _ = _run(tmp_path, name, 9, 4)  # budget 9: 3 random start-up trials, then the model
    large, _ = _run(tmp_path, name, 60, 4)  # budget 60: Optuna's 10, all 4 still random
    assert small[:3] == random[:3] and small[3] != random[3]
    assert large == random


def test_nsga2_population_follows_the_budget(tmp_path):
    key = "NSGAIISampler:generation"
    _, s = _run(tmp_path, "nsga2", 9, 4)  # population 3: the 4th trial is a child, generation 1
    assert [t.system_attrs[key] for t in s.study.trials] == [0, 0, 0, 1]
    _, s = _run(tmp_path, "nsga2", 30, 4)  # population 10: all 4 in the random first generation
    assert [t.system_attrs[key] for t in s.study.trials] == [0, 0, 0, 0]


def test_grid_is_log_spaced():
    g = lam_grid(_cfg().search.space, 5)
    assert g[0] == pytest.approx(0.01) and g[-1] == pytest.approx(10.0)
    assert g[2] == pytest.approx((0.01 * 10.0) ** 0.5)
    with pytest.raises(ValueError):
        make_sampler("bayes", seed=0, space=_cfg().search.space, n_trials=2)


def test_grid_spreads_the_targets_of_a_targeted_search(tmp_path):
    space = {"target_ratio": {"low": 0.2, "high": 0.8}}
    cfg = parse_config(
        {"objective": {"kind": "targeted", "target_ratio": 0.5}, "search": {"sampler": "grid", "space": space}},
        "s.yaml",
    )
    assert grid(cfg.search.space, 4) == ("target_ratio", pytest.approx([0.2, 0.4, 0.6, 0.8]))
    assert grid(cfg.search.space, 1) == ("target_ratio", [pytest.approx(0.5)])
    logged = parse_config({"search": {"space": {"target_gflops": {"low": 0.1, "high": 10.0, "log": True}}}}, "s.yaml")
    assert grid(logged.search.space, 3) == ("target_gflops", pytest.approx([0.1, 1.0, 10.0]))
    s = _searcher(tmp_path, cfg, sampler="grid", n=4)
    got = [s.suggest(str(i))["knobs"]["target_ratio"] for i in range(4)]
    assert got == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert set(s.dists) == {"target_ratio"}
    # lambda still wins when the space has both
    both = parse_config({"search": {"space": {"lam": {"low": 0.01, "high": 10.0, "log": True}, **space}}}, "s.yaml")
    assert grid(both.search.space, 3)[0] == "lam"


def test_apply_knobs_sets_the_run_config():
    cfg = _cfg()
    run = trial_config(cfg, {"lam": 0.3, "alpha": 0.2, "objective": "constrained", "tau_rel": 0.02})
    assert run.objective.lam == 0.3 and run.objective.alpha == 0.2
    assert run.objective.kind == "constrained" and run.objective.tau_rel == 0.02 and run.objective.tau is None


def test_post_training_knobs_reach_the_run_config_and_the_params():
    from econ_ray.search.space import distributions, trial_params

    cfg = _cfg()
    run = trial_config(
        cfg,
        {
            "objective": "constrained",
            "tau_rel": 0.05,
            "gate_lr": 0.2,
            "gate_bias_init": 1.5,
            "drive_reference": "paired",
        },
    )
    assert run.training.gate_lr == 0.2 and run.attention.gate_bias_init == 1.5
    assert run.objective.drive_reference == "paired"
    params = trial_params(run)
    assert (params["gate_lr"], params["gate_bias_init"], params["drive_reference"]) == (0.2, 1.5, "paired")
    space = parse_config(
        {
            **cfg.model_dump(exclude={"search"}),
            "search": {
                "space": {"gate_lr": {"low": 0.01, "high": 0.3, "log": True}, "drive_reference": ["tau", "paired"]}
            },
        },
        "s.yaml",
    ).search.space
    d = distributions(space)
    assert d["gate_lr"].log and d["drive_reference"].choices == ("tau", "paired")


def test_infeasible_trial_never_enters_the_pareto_set():
    recs = [
        TrialRecord("ok", 0, "complete", {}, {"metric": 0.89, "effective_gflops": 2.0}, feasible=True),
        TrialRecord("cheat", 1, "complete", {}, {"metric": 0.95, "effective_gflops": 1.0}, feasible=False),
        TrialRecord("failed", 2, "failed", {}, {}, reason="NaN"),
        TrialRecord("stopped", 3, "stopped", {}, {"metric": 0.99, "effective_gflops": 0.5}),
    ]
    front = pareto_front(points_from(recs))
    assert [p.trial_id for p in front] == ["ok"]


def test_a_trial_that_broke_its_own_ceiling_is_infeasible_and_never_on_the_front():
    from econ_ray.search.results import mark_feasible

    cfg = parse_config(
        {
            "attention": {"mode": "gates"},
            "objective": {"kind": "constrained", "tau_rel": 0.05},
            "search": {"space": {"tau_rel": {"low": 0.0, "high": 0.1}}},
        },
        "c.yaml",
    )
    cons = make_constraints(cfg, True)
    base = {"metric": 0.9, "effective_gflops": 1.0, "dense_metric": 0.9}
    recs = [
        TrialRecord("ok", 0, "complete", {}, {**base, "feasible": True, "metric": 0.8, "effective_gflops": 2.0}),
        TrialRecord("broke", 1, "complete", {}, {**base, "feasible": False, "infeasible_reason": "validation CE x"}),
    ]
    mark_feasible(recs, cons)
    assert [r.feasible for r in recs] == [True, False]
    assert recs[1].reason == "its own ceiling: validation CE x"
    # "broke" dominates "ok" on both objectives, yet only "ok" is on the front
    assert [p.trial_id for p in pareto_front(points_from(recs), maximize_metric=True)] == ["ok"]
    # a penalised-only search has no such constraint (its trials report feasible: None)
    assert make_constraints(_cfg(), True) == []


def test_study_names_its_objectives_and_warns_nothing(tmp_path):
    """optuna-dashboard and `optuna.load_study` read the objective names; a constrained search uses
    Optuna 5's Trial.set_constraint, not the deprecated constraints_func (no FutureWarning)."""
    import warnings

    cfg = _cfg(min_metric_vs_dense=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        s = ConstrainedOptunaSearch(
            cfg.search.space,
            sampler="tpe",
            seed=0,
            n_trials=4,
            storage=f"sqlite:///{tmp_path / 'optuna.db'}",
            study_name="named",
            constraints=make_constraints(cfg, True),
            objective_keys=("metric", "static_gflops"),
            metric_names=("pearson", "static_gflops"),
        )
        for i in range(4):
            s.suggest(f"t{i}")
            s.on_trial_complete(
                f"t{i}", {"final": 1, "metric": 0.5 + i / 10, "static_gflops": 1.0 - i / 10, "dense_metric": 0.9}
            )
    study = optuna.load_study(study_name="named", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.metric_names == ["pearson", "static_gflops"]
    assert all(set(t.constraints) == {"metric_vs_dense"} for t in study.trials)


def test_the_edges_cost_is_the_kept_fraction_with_every_edge_as_the_dense_cost():
    from econ_ray.search.records import cost_key, dense_cost

    assert cost_key("edges") == "attention_density"
    recs = [
        TrialRecord("a", 0, "complete", {}, {"metric": 0.8, "attention_density": 0.2, "dense_total_gflops": 3.0}),
        TrialRecord("b", 1, "failed", {}, {}),
    ]
    assert dense_cost(recs, "attention_density") == 1.0
    assert dense_cost(recs, "effective_gflops") == 3.0
    assert dense_cost(recs[1:], "attention_density") is None
    points = points_from(recs, "attention_density")
    assert points[0].gflops == 0.2  # the failed trial is a point with no cost
