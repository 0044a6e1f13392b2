"""The typed config: shipped files validate, bad files fail with file, field and expectation."""

from pathlib import Path

import pytest
import yaml

from econ_ray.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_search_spaces_validate(path):
    cfg = load_config(path)
    assert cfg.name


def test_quickstart_searches_a_spread_of_budgets_from_one_dense_model():
    cfg = load_config(ROOT / "search_spaces" / "quickstart.yaml")
    r = cfg.search.space.target_ratio
    assert cfg.objective.kind == "targeted" and cfg.search.sampler == "grid" and cfg.search.cost == "static"
    assert r is not None and r.log and r.high / r.low >= 3  # the front can span 3x in cost
    assert cfg.search.dense_start == "shared" and cfg.objective.dense_steps > 0


def test_priced_example_carries_search_ranges():
    cfg = load_config(ROOT / "search_spaces" / "tiny_priced.yaml")
    assert cfg.search.space.lam is not None and cfg.search.space.lam.log


BAD = {
    "unknown top key": ({"no_such_key": 1}, "no_such_key", "unknown key"),
    "did you mean": ({"objective": {"lamb": 1.0}}, "objective.lamb", "did you mean 'lam'"),
    "wrong type": ({"training": {"batch_size": "big"}}, "training.batch_size", "integer"),
    "shared dense start without dense steps": (
        {"search": {"dense_start": "shared"}, "objective": {"dense_steps": 0}},
        "search.dense_start",
        "dense_steps >= 1",
    ),
    "shared dense start from a loaded model": (
        {"model": {"name": "gpt2"}, "search": {"dense_start": "shared"}, "objective": {"dense_reference": "model"}},
        "search.dense_start",
        "dense_reference 'warmup'",
    ),
    "unknown dense start": ({"search": {"dense_start": "once"}}, "search.dense_start", "per_trial"),
    "negative alpha": ({"objective": {"alpha": -1}}, "objective.alpha", "greater than or equal to 0"),
    "tau <= 0": ({"objective": {"kind": "constrained", "tau": 0.0}}, "objective.tau", "greater than 0"),
    "constrained without tau": (
        {"objective": {"kind": "constrained"}, "attention": {"mode": "gates"}},
        "objective",
        "needs tau or tau_rel",
    ),
    "tau and tau_rel": ({"objective": {"tau": 1.0, "tau_rel": 0.1}}, "objective", "not both"),
    "log range with low 0": (
        {"search": {"space": {"lam": {"low": 0.0, "high": 1.0, "log": True}}}},
        "search.space.lam",
        "log scale needs low > 0",
    ),
    "reversed range": ({"search": {"space": {"alpha": {"low": 1.0, "high": 0.5}}}}, "search.space.alpha", "reversed"),
    "unknown sampler": ({"search": {"sampler": "bayes"}}, "search.sampler", "tpe"),
    "zero trials": ({"search": {"trials": 0}}, "search.trials", "greater than or equal to 1"),
    "k > seq len": ({"attention": {"mode": "topk", "k": 999}}, "", "larger than data.max_length"),
    "topk without k": ({"attention": {"mode": "topk"}}, "attention", "needs k"),
    "budget below 1": (
        {"attention": {"mode": "budget", "budget": 0.5}},
        "attention.budget",
        "expected a number >= 1: every query keeps at least its strongest edge",
    ),
    "budget below 1 with keep_strongest": (
        {"attention": {"mode": "budget", "budget": 0.99, "keep_strongest": True}},
        "attention.budget",
        "a mean below 1 edge per query cannot be reached (got 0.99)",
    ),
    "budget 0 outside budget mode": ({"attention": {"mode": "gates", "budget": 0.0}}, "attention.budget", ">= 1"),
    "budget NaN": ({"attention": {"mode": "budget", "budget": float("nan")}}, "attention.budget", ">= 1"),
    "budget > seq len": (
        {"attention": {"mode": "budget", "budget": 33.0}, "data": {"max_length": 32}},
        "",
        "attention.budget (33.0) is larger than data.max_length (32)",
    ),
    "unknown mode": ({"attention": {"mode": "sparse"}}, "attention.mode", "dense"),
    "heads not dividing": ({"model": {"tiny": {"hidden": 30, "heads": 4}}}, "model.tiny", "multiple of heads"),
    # a relative ceiling measured on an untrained model (chance-level CE_dense) is refused
    "tau_rel from a random-init model": (
        {
            "attention": {"mode": "gates"},
            "objective": {"kind": "constrained", "tau_rel": 0.05, "dense_reference": "model"},
        },
        "objective.dense_reference",
        "'tiny-bert' is randomly initialised",
    ),
    "tau_rel from minilm's new head": (
        {
            "model": {"name": "minilm"},
            "attention": {"mode": "gates"},
            "objective": {"kind": "constrained", "tau_rel": 0.05, "dense_reference": "model"},
        },
        "objective.dense_reference",
        "untrained task head",
    ),
    "tau_rel with no warm-up": (
        {"attention": {"mode": "gates"}, "objective": {"kind": "constrained", "tau_rel": 0.05, "dense_steps": 0}},
        "objective.dense_steps",
        "dense_steps >= 1",
    ),
    "searched tau_rel with no warm-up": (
        {
            "attention": {"mode": "gates"},
            "objective": {"dense_steps": 0},
            "search": {"space": {"objective": ["penalised", "constrained"], "tau_rel": {"low": 0.0, "high": 0.1}}},
        },
        "objective.dense_steps",
        "needs dense steps > 0",
    ),
}


def test_trained_or_absolute_ceilings_are_accepted():
    gates = {"mode": "gates"}
    ok = [
        {"kind": "constrained", "tau_rel": 0.05, "dense_steps": 1},  # warm-up trains the reference
        {"kind": "constrained", "tau": 0.5, "dense_reference": "model"},  # absolute: no reference needed
        {"kind": "constrained", "tau": 0.5, "dense_steps": 0},
        {"kind": "penalised", "dense_reference": "model"},  # no ceiling at all
    ]
    for objective in ok:
        parse_config({"attention": gates, "objective": objective}, "ok.yaml")
    # a Hugging Face name or folder may be a fine-tuned model: trusted as the reference
    parse_config(
        {
            "model": {"name": "gpt2"},
            "attention": gates,
            "objective": {"kind": "constrained", "tau_rel": 0.01, "dense_reference": "model", "dense_steps": 0},
        },
        "ok.yaml",
    )


@pytest.mark.parametrize("case", sorted(BAD), ids=str)
def test_bad_configs_name_file_field_and_expectation(case):
    data, field, expected = BAD[case]
    with pytest.raises(ConfigError) as err:
        parse_config(data, "bad.yaml")
    msg = str(err.value)
    assert msg.startswith("bad.yaml: ")
    assert "\n" not in msg
    assert field in msg
    assert expected in msg


@pytest.mark.parametrize("budget", [1.0, 1.5, 32.0])
def test_reachable_budgets_validate(budget):
    cfg = parse_config({"attention": {"mode": "budget", "budget": budget}, "data": {"max_length": 32}}, "ok.yaml")
    assert cfg.attention.budget == budget
    with_strongest = {"mode": "budget", "budget": budget, "keep_strongest": True}
    assert parse_config({"attention": with_strongest}, "ok.yaml").attention.keep_strongest


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_apply_dotted_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"objective": {"lam": 0.1}}))
    cfg = load_config(f, {"objective.lam": 2.0, "training.lr": 1e-4})
    assert cfg.objective.lam == 2.0 and cfg.training.lr == 1e-4
