"""The econ-ray CLI as a user runs it: help text, validate, flops, train --json."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from econ_ray.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "search_spaces" / "tiny_priced.yaml"


def _sub_help(verb: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[verb].format_help()


@pytest.mark.parametrize("verb", ["train", "flops", "validate"])
def test_every_option_has_help(verb):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[verb]
    for action in sub._actions:
        if action.dest != "help":
            assert action.help, f"{verb} {action.option_strings or action.dest} has no help"
    assert "usage" in _sub_help(verb)


def test_train_help_lists_contract_options():
    text = _sub_help("train")
    for opt in (
        "--lam",
        "--alpha",
        "--beta",
        "--objective",
        "--tau",
        "--tau-rel",
        "--attention",
        "--k",
        "--max-steps",
        "--seed",
        "--set",
        "--json",
    ):
        assert opt in text


def test_flops_json(capsys):
    assert main(["flops", "--arch", "bert-base", "--seq-len", "128", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["dense_gflops"] == pytest.approx(21.744, rel=0.001)
    assert out["dense_total_gflops"] == pytest.approx(22.348, rel=0.001) and "total_gflops" not in out


def test_validate_good_and_bad(tmp_path, capsys):
    assert main(["validate", str(QUICKSTART)]) == 0
    data = yaml.safe_load(QUICKSTART.read_text())
    data["objective"]["lamda"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(bad) in err and "objective.lamda" in err and "did you mean 'lam'" in err


def test_validate_missing_data_file(tmp_path, capsys):
    data = yaml.safe_load(QUICKSTART.read_text())
    data["data"]["source"] = str(tmp_path / "missing.csv")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["validate", str(bad)]) == 2
    assert "data.source" in capsys.readouterr().err


def test_train_bad_override_exits_2_before_work(capsys):
    assert main(["train", str(QUICKSTART), "--set", "training.batch_size=-3"]) == 2
    assert "training.batch_size" in capsys.readouterr().err


def test_train_json_last_line_subprocess(tmp_path):
    """The real console entry point, a short run: the last stdout line is the summary JSON; --save
    writes a model folder that econ-ray loads back."""
    exe = Path(sys.executable).with_name("econ-ray")
    cmd = [
        str(exe),
        "train",
        str(QUICKSTART),
        "--lam",
        "1",
        "--max-steps",
        "20",
        "--seed",
        "1",
        "--set",
        "objective.dense_steps=20",
        "--set",
        "data.builtin.n_train=300",
        "--set",
        "data.builtin.n_validation=200",
        "--save",
        str(tmp_path / "m"),
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "task",
        "metric_name",
        "metric",
        "ce",
        "dense_gflops",
        "effective_gflops",
        "seq_len",
        "attention_density",
        "ffn_density",
        "gini",
        "entropy_bits",
        "lam",
        "alpha",
        "beta",
        "tau",
        "objective",
        "attention",
    ):
        assert key in summary
    assert summary["lam"] == 1.0 and summary["steps"] == 20
    from econ_ray.modeling import load_model

    model, _, meta = load_model(summary["saved_to"])
    assert meta["summary"]["metric"] == pytest.approx(summary["metric"])


@pytest.fixture
def hub_out_of_reach(monkeypatch):
    """A machine without the Hugging Face hub, as a laptop for the cluster's configs is: no
    HF_HUB_OFFLINE, an endpoint nothing listens on (the probe is refused at once, nothing downloads)."""
    from econ_ray.modeling.build import hub_reachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    hub_reachable.cache_clear()
    yield
    hub_reachable.cache_clear()


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_search_space_validates(path, capsys, hub_out_of_reach):
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_hub_models_offline_fail_fast_in_one_line(capsys, hub_out_of_reach, monkeypatch):
    """validate takes a hub name it cannot confirm from a machine without the hub (the cluster loads
    it), but not when HF_HUB_OFFLINE says this machine works offline; train, which would load it
    here, refuses at once in one line (no loader retries)."""
    from econ_ray.modeling.build import hub_reachable

    cluster_cfg = str(ROOT / "search_spaces" / "bert_base_mnli.yaml")
    assert main(["train", cluster_cfg]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be reached" in err[0] and "model.name" in err[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    assert main(["validate", cluster_cfg]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HF_HUB_OFFLINE is set" in err[0]


def test_the_pareto_table_shows_the_knobs_of_the_objectives_it_holds():
    from econ_ray.cli.main import pareto_columns

    targeted = [{"objective": "targeted", "method": "targeted"}]
    cols = pareto_columns(targeted)
    assert "target_ratio" in cols and not {"lam", "alpha", "beta", "tau", "objective"} & set(cols)
    mixed = [{"objective": "penalised", "method": "penalised"}, {"objective": "prune", "method": "prune-heads"}]
    cols = pareto_columns(mixed)
    assert {"lam", "alpha", "beta", "target_ratio", "objective"} <= set(cols) and "tau" not in cols
    assert "tau" in pareto_columns([{"objective": "constrained", "method": "constrained"}])
    assert cols.index("metric") < cols.index("lam") < cols.index("version")


def test_tables_never_cut_a_column_name(capsys, monkeypatch):
    """Piped output (rich assumes 80 columns) keeps every header whole: the names carry the units."""
    from rich.table import Table

    from econ_ray.cli.common import print_fields, print_rows, print_table

    monkeypatch.setenv("COLUMNS", "80")
    cols = [f"a_rather_long_column_name_{i}_ms" for i in range(8)]
    print_rows("wide", [dict.fromkeys(cols, 1.5)], cols)
    print_fields("one record", dict.fromkeys(cols, 2.5), cols)
    table = Table(title="posttrain's, search's and topk's tables")  # columns that may wrap
    for c in cols:
        table.add_column(c, justify="right")
    table.add_row(*["0.1234"] * len(cols))
    print_table(table, "a line after it")
    out = capsys.readouterr().out
    assert "a line after it" in out
    for c in cols:
        assert out.count(c) == 3, c
    assert "…" not in out


def test_an_empty_pareto_set_is_titled_with_the_searchs_own_cost(tmp_path, monkeypatch, capsys):
    """All trials infeasible: the table's title still names the search's metric and cost (search.cost
    edges: the kept fraction of attention edges), not a default of static GFLOPs."""
    import econ_ray.search.driver as driver

    path = tmp_path / "s.yaml"
    path.write_text(
        "attention: {mode: gates}\nobjective: {kind: constrained, tau_rel: 0.01}\n"
        "search: {cost: edges, space: {tau_rel: {low: 0.005, high: 0.1, log: true}}}\n"
    )
    out = driver.SearchOutcome(
        run_dir=str(tmp_path),
        n_trials=2,
        n_failed=0,
        hypervolume=0.0,
        registered_model=None,
        mlflow_parent_run_id=None,
        pareto=[],
        failures=[],
        reference_point=(0.5, 1.05),
        plot=str(tmp_path / "pareto.png"),
        n_infeasible=2,
        dense={"metric_name": "accuracy", "metric": 0.8, "dense_total_gflops": 1.0},
    )
    monkeypatch.setattr(driver, "run_search", lambda *a, **k: out)
    assert main(["search", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Pareto set: accuracy vs attention_density (2 trials, 0 failed, 2 infeasible" in text
