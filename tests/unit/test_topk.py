"""The top-k sweep (no retraining) on a tiny trained model: trends of seed 000 Table 2, files written."""

import json

import pytest

from econ_ray.cli.main import main
from econ_ray.experiments.topk import sweep, write_sweep
from econ_ray.modeling import save_model
from econ_ray.training import train_run
from tests.unit.test_training import tiny_cfg


@pytest.fixture(scope="module")
def trained():
    cfg = tiny_cfg(attention={"mode": "dense"}, kind="penalised", lam=0.0)
    return cfg, train_run(cfg)


def test_sweep_trends_and_files(trained, tmp_path):
    cfg, res = trained
    p = res.prepared
    rows = sweep(p.model, p.runtime, p.validation, p.task, seq_len=24, ks=[24, 8, 2, 1], budgets=[3.0])
    topk = [r for r in rows if r["mode"] == "topk"]
    gini = [r["gini"] for r in topk]
    ent = [r["entropy_bits"] for r in topk]
    assert gini == sorted(gini)  # k falls -> Gini rises
    assert ent == sorted(ent, reverse=True)  # k falls -> entropy falls
    assert topk[0]["effective_gflops"] > topk[-1]["effective_gflops"]
    assert topk[0]["metric"] == rows[0]["metric"]  # k = L is the dense model
    assert p.runtime.mode == "dense"  # the sweep restores the mode
    paths = write_sweep(tmp_path, rows)
    assert paths["accuracy"].stat().st_size > 1000 and paths["allocation"].stat().st_size > 1000


def test_cli_topk_on_a_saved_model_folder(trained, tmp_path, capsys):
    cfg, res = trained
    p = res.prepared
    folder = save_model(tmp_path / "m", p.model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=res.summary)
    assert main(["topk", str(folder), "--k", "8,1", "--out", str(tmp_path / "out"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["k"] for r in out["rows"]] == [8, 1]
    for key in ("k", "metric_name", "metric", "effective_gflops", "attention_density", "gini", "entropy_bits"):
        assert key in out["rows"][0]
