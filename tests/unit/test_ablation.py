"""Ablation of the compute price: variants differ only by what is priced; same start, same steps."""

import json

import pytest

from econ_ray.cli.main import main
from econ_ray.experiments.ablation import run_ablation, variant_config, write_ablation
from tests.unit.test_training import tiny_cfg


def test_variant_configs_price_only_what_they_name():
    base = tiny_cfg(kind="constrained", tau_rel=0.05)
    att, ffn, both, dense = (variant_config(base, v, 2.0) for v in ("attention", "ffn", "both", "dense"))
    assert (att.objective.alpha, att.objective.beta) == (1.0, 0.0)
    assert (ffn.objective.alpha, ffn.objective.beta) == (0.0, 1.0)
    assert (both.objective.alpha, both.objective.beta) == (1.0, 1.0)
    assert all(c.objective.kind == "penalised" and c.objective.lam == 2.0 for c in (att, ffn, both))
    assert dense.attention.mode == "dense" and dense.objective.lam == 0.0
    with pytest.raises(ValueError, match="unknown ablation variant"):
        variant_config(base, "heads", 1.0)


def test_priced_parts_get_sparser(tmp_path):
    rows = {r["variant"]: r for r in run_ablation(tiny_cfg(), 2.0, ["dense", "attention", "ffn"])}
    # every variant started from the same dense phase
    assert len({round(r["dense_metric"], 9) for r in rows.values()}) == 1
    assert rows["dense"]["attention_density"] == 1.0
    assert rows["attention"]["attention_density"] < 0.8 * rows["ffn"]["attention_density"]
    assert rows["ffn"]["ffn_density"] < 0.8 * rows["attention"]["ffn_density"]
    assert all(r["steps"] == 60 for r in rows.values())
    paths = write_ablation(tmp_path, list(rows.values()))
    assert json.loads(paths["json"].read_text())[0]["variant"] == "dense"
    assert paths["plot"].stat().st_size > 1000


def test_cli_rejects_bad_lambda_and_variant(capsys):
    assert main(["ablation", "search_spaces/tiny_priced.yaml", "--lam", "0"]) == 2
    assert main(["ablation", "search_spaces/tiny_priced.yaml", "--lam", "1", "--variants", "both,heads"]) == 2
    err = capsys.readouterr().err
    assert "--lam must be > 0" in err and "heads" in err
