"""The pre-flight returns what it learned: the task spec as the data layer resolves it (kind, metric,
direction, chance level), so a search never guesses its metric from ``data.kind``."""

import pytest

from econ_ray.config import ConfigError, parse_config
from econ_ray.search.preflight import check_run, check_search
from econ_ray.search.space import trial_config, trial_params


def _cfg(source, model="tiny-bert", **extra):
    return parse_config({"model": {"name": model}, "data": {"source": str(source)}, **extra}, "f.yaml")


def test_local_txt_without_kind_is_lm_and_minimises_perplexity(tmp_path):
    (tmp_path / "c.txt").write_text("the cat sat\nthe dog ran\na red house\n")
    facts = check_run(_cfg(tmp_path / "c.txt", "tiny-gpt2"), "f.yaml")
    assert (facts.task.kind, facts.metric_name, facts.maximize) == ("lm", "perplexity", False)
    assert facts.chance(vocab_size=123) == 123.0


def test_local_csv_numeric_labels_is_regression_and_maximises_pearson(tmp_path):
    (tmp_path / "r.csv").write_text("text,label\na b,0.5\nc d,1.25\ne f,2.0\n")
    facts = check_run(_cfg(tmp_path / "r.csv"), "f.yaml")
    assert (facts.task.kind, facts.metric_name, facts.maximize, facts.chance()) == ("regression", "pearson", True, 0.0)


def test_local_csv_integer_labels_count_classes_beyond_the_peeked_rows(tmp_path):
    rows = [f"t{i},{i % 2}" for i in range(40)] + ["late,4"]  # class 4 appears after the first 20 rows
    (tmp_path / "c.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    facts = check_run(_cfg(tmp_path / "c.csv"), "f.yaml")
    assert (facts.task.kind, facts.task.num_labels, facts.metric_name) == ("classification", 5, "accuracy")
    assert facts.chance() == pytest.approx(1 / 5)
    assert facts.chance(num_labels=4) == pytest.approx(1 / 4)  # a trial's loaded label count wins


def test_builtin_task_spec_comes_from_its_table():
    facts = check_run(parse_config({}, "f.yaml"), "f.yaml")
    assert facts.task.name.startswith("builtin:") and facts.maximize


def test_search_facts_carry_the_task_and_the_tracking_store(tmp_path):
    (tmp_path / "c.txt").write_text("the cat sat\nthe dog ran\na red house\n")
    cfg = _cfg(tmp_path / "c.txt", "tiny-gpt2", search={"space": {"lam": {"low": 0.1, "high": 1.0}}})
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    facts = check_search(cfg, "f.yaml", run_dir=str(tmp_path / "run"), tracking_uri=uri, capacity=(8.0, 0.0))
    assert facts.metric_name == "perplexity" and not facts.maximize
    assert facts.tracking_uri == uri and facts.capacity == (8.0, 0.0)
    assert not (tmp_path / "run").exists()  # nothing created


def test_a_searched_constrained_objective_needs_a_ceiling_in_the_file():
    space = {"lam": {"low": 0.1, "high": 1.0}, "objective": ["penalised", "constrained"]}
    with pytest.raises(ConfigError, match=r"search.space.objective: a 'constrained' trial needs a loss ceiling"):
        parse_config({"attention": {"mode": "gates"}, "search": {"space": space}}, "f.yaml")
    ok = parse_config(
        {"attention": {"mode": "gates"}, "objective": {"tau_rel": 0.05}, "search": {"space": space}}, "f.yaml"
    )
    run = trial_config(ok, {"objective": "constrained", "lam": 0.3})
    assert (run.objective.kind, run.objective.tau_rel) == ("constrained", 0.05)


def test_trial_params_are_read_from_the_trained_run_config():
    cfg = parse_config({"objective": {"alpha": 0.7}, "attention": {"mode": "gates"}}, "f.yaml")
    run = trial_config(cfg, {"lam": 0.25})
    assert trial_params(run) == {
        "lam": 0.25,
        "alpha": 0.7,
        "beta": 0.0,
        "tau": None,
        "tau_rel": None,
        "target_ratio": None,
        "target_gflops": None,
        "prune_method": None,
        "objective": "penalised",
        "attention": "gates",
        "drive_reference": None,  # a constrained objective's only
        "gate_lr": None,  # gates: the file's (None = training.lr)
        "gate_bias_init": 3.0,
    }
    targeted = trial_config(
        parse_config({"objective": {"kind": "targeted", "target_gflops": 1.0}}), {"target_ratio": 0.4}
    )
    assert (targeted.objective.target_ratio, targeted.objective.target_gflops) == (0.4, None)


def test_a_search_runs_its_pre_flight_once_and_probes_the_tracking_store_once(tmp_path, monkeypatch):
    """CLI -> run_search: one pre-flight, one tracking probe, then the session starts."""
    import yaml

    import econ_ray.search.driver as driver
    import econ_ray.tracking as tracking
    from econ_ray.cli.main import main

    calls = {"preflight": 0, "probe": 0}
    real_check, real_probe = driver.check_search, tracking.check_tracking_uri

    def counted_check(*a, **k):
        calls["preflight"] += 1
        return real_check(*a, **k)

    def counted_probe(*a, **k):
        calls["probe"] += 1
        return real_probe(*a, **k)

    class Started(Exception):
        pass

    def stop(*a, **k):
        raise Started

    monkeypatch.setattr(driver, "check_search", counted_check)
    monkeypatch.setattr(tracking, "check_tracking_uri", counted_probe)
    monkeypatch.setattr(driver, "open_session", stop)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "search": {"trials": 1, "concurrency": 1, "space": {"lam": {"low": 0.1, "high": 1}}},
                "distributed": {"workers": 1},
            }
        )
    )
    with pytest.raises(Started):
        main(["search", str(path), "--run-dir", str(tmp_path / "run")])
    assert calls == {"preflight": 1, "probe": 1}
    assert not (tmp_path / "run").exists()  # the pre-flight created nothing


def test_plan_of_a_new_search_is_not_a_resume_and_writes_nothing(tmp_path):
    from econ_ray.search.driver import plan

    cfg = parse_config({"search": {"trials": 5, "concurrency": 1}}, "f.yaml")
    p = plan(cfg, config_path="f.yaml", trials=3, sampler="random", run_dir=str(tmp_path / "run"))
    assert not p.resumed and p.state == {} and p.prior == [] and p.remaining == 3
    assert (p.cfg.search.trials, p.cfg.search.sampler, p.file.search.trials) == (3, "random", 5)
    assert not (tmp_path / "run").exists()


def test_a_search_hands_its_trials_absolute_local_paths(tmp_path, monkeypatch):
    """Trials run in their own working directory: a relative model folder or data file must reach them
    absolute (a relative folder was taken for a hub name there); names that are not local paths stay."""
    from econ_ray.search.driver import plan

    (tmp_path / "dense").mkdir()
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\t0\n")
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({"model": {"name": "dense"}, "data": {"source": "train.tsv"}}, "f.yaml")
    p = plan(cfg, config_path="f.yaml", run_dir=str(tmp_path / "run"))
    assert p.cfg.model.name == str(tmp_path / "dense") and p.cfg.data.source == str(tmp_path / "train.tsv")
    hub = parse_config({"model": {"name": "minilm"}, "data": {"source": "builtin:majority"}}, "f.yaml")
    p = plan(hub, config_path="f.yaml", run_dir=str(tmp_path / "run"))
    assert (p.cfg.model.name, p.cfg.data.source) == ("minilm", "builtin:majority")
