"""Sparse-attention post-training on a tiny GPT-2 (few steps): rows, matching to top-k, files, CLI errors."""

import json
import math

import pytest
import torch

from econ_ray.cli.main import main
from econ_ray.config import parse_config
from econ_ray.experiments.posttrain import (
    bracket_ks,
    run_posttrain,
    topk_edges_per_query,
    valid_keys_per_row,
    write_posttrain,
)


def tiny_lm_cfg(**training):
    return parse_config(
        {
            "model": {
                "name": "tiny-gpt2",
                "tiny": {"layers": 2, "hidden": 32, "heads": 4, "intermediate": 64},
                "dropout": 0.0,
            },
            "data": {
                "source": "builtin:addition",
                "max_length": 16,
                "heldout_fraction": 0.2,
                "builtin": {"n_train": 400, "n_validation": 64},
            },
            "attention": {"mode": "gates"},
            "objective": {
                "kind": "constrained",
                "tau_rel": 0.05,
                "dense_steps": 40,
                "constraint_batch_size": 64,
                "multiplier": {"lr": 0.5, "init": 0.0},
            },
            "training": {
                "lr": 3e-3,
                "gate_lr": 5e-2,
                "batch_size": 32,
                "max_steps": 20,
                "eval_every": 10,
                "seed": 0,
                "progress": False,
                **training,
            },
        },
        "tiny_lm.yaml",
    )


def test_topk_edges_per_query_counts_causal_keys():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # rows have 1, 2, 3 and 1, 2 valid keys
    assert topk_edges_per_query(mask, 1) == pytest.approx(1.0)
    assert topk_edges_per_query(mask, 2) == pytest.approx((1 + 2 + 2 + 1 + 2) / 5)
    assert topk_edges_per_query(mask, 4) == pytest.approx((1 + 2 + 3 + 1 + 2) / 5)  # dense
    assert bracket_ks(mask, 1.5, 4) == (1, 2)
    assert bracket_ks(mask, 0.5, 4) == (None, 1)  # below top-1: no k_lo
    assert bracket_ks(mask, 1.6, 4) == (2, 2)  # k = 2 keeps exactly 1.6
    assert bracket_ks(mask, 1.8, 4) == (3, 3)  # k = 3 is dense (the longest row has 3 keys)
    assert bracket_ks(mask, 2.0, 4) == (3, None)  # above dense: no k_hi


@pytest.fixture(scope="module")
def result():
    return run_posttrain(tiny_lm_cfg(), [0.05, 0.5])


def test_rows_have_kept_fraction_and_ce(result):
    rows = result["rows"]
    methods = [r["method"] for r in rows]
    assert methods.count("dense") == 1 and methods.count("gates") == 2 and methods.count("dense_continued") == 1
    for r in rows:
        assert 0 < r["kept_fraction"] <= 1, r
        assert math.isfinite(r["ce"]) and r["ce"] > 0, r
    dense = rows[0]
    assert dense["kept_fraction"] == 1.0
    assert dense["edges_per_query"] == pytest.approx(result["mean_valid_keys_per_query"])
    gates = [r for r in rows if r["method"] == "gates"]
    assert [g["eps"] for g in gates] == [0.05, 0.5]
    assert gates[1]["feasible"]  # eps = 0.5 is a generous ceiling: the post-training met it
    for g in gates:
        assert g["tau"] == pytest.approx((1 + g["eps"]) * result["ce_dense_heldout"])
        # feasible: a snapshot after step 0 certified on rows the multiplier never read, and validation
        # CE within tau; otherwise the row says why (never a silent overshoot)
        if g["feasible"]:
            assert g["snapshot_step"] > 0 and g["ce_certified"] <= g["tau"] and g["ce"] <= g["tau"]
            assert g["infeasible_reason"] is None
        else:
            assert g["infeasible_reason"]
            assert g["ce"] > g["tau"] or g["snapshot_step"] is None
        assert g["edges_per_query"] == pytest.approx(g["kept_fraction"] * result["mean_valid_keys_per_query"])


def test_topk_rows_match_the_gated_edges_per_query(result):
    rows = result["rows"]
    for g in (r for r in rows if r["method"] == "gates"):
        matched = {r["match"]: r for r in rows if r.get("matched_eps") == g["eps"]}
        assert "budget" in matched and ("k_lo" in matched or "k_hi" in matched)
        if "k_lo" in matched:
            assert matched["k_lo"]["edges_per_query_expected"] <= g["edges_per_query"] + 1e-9
        if "k_hi" in matched:
            assert matched["k_hi"]["edges_per_query_expected"] >= g["edges_per_query"] - 1e-9
        if "k_lo" in matched and "k_hi" in matched:
            assert matched["k_hi"]["k"] - matched["k_lo"]["k"] <= 1
            lo, hi = sorted((matched["k_lo"]["ce"], matched["k_hi"]["ce"]))
            assert lo - 1e-9 <= g["topk_ce_at_match"] <= hi + 1e-9
        for tag in ("k_lo", "k_hi"):
            if tag in matched:  # top-k really keeps the counted edges (ties aside)
                t = matched[tag]
                assert t["edges_per_query"] == pytest.approx(t["edges_per_query_expected"], rel=1e-3)
        b = matched["budget"]
        assert b["budget"] == pytest.approx(max(g["edges_per_query"], 1.0))
        assert b["edges_per_query"] == pytest.approx(b["budget"], rel=0.1)  # threshold per layer and example


def test_writes_json_and_plot(result, tmp_path):
    paths = write_posttrain(tmp_path, result)
    data = json.loads(paths["json"].read_text())
    assert data["rows"][0]["method"] == "dense"
    assert paths["plot"].stat().st_size > 5000
    assert paths["trajectories"].stat().st_size > 5000  # multiplier, drive and certified CE, kept edges per eps
    assert set(data["trajectories"]) == {"0.05", "0.5"}


def test_freeze_weights_trains_only_gate_biases():
    cfg = tiny_lm_cfg(max_steps=10)
    out = run_posttrain(cfg, [0.5], freeze_weights=True)
    assert [r["method"] for r in out["rows"] if r["method"].startswith("dense")] == ["dense"]  # no continued run
    assert out["freeze_weights"] is True


@pytest.mark.parametrize("eps", ["-0.1", "abc", ",", "nan"])
def test_cli_bad_eps_exits_2(eps, capsys):
    assert main(["posttrain", "search_spaces/posttrain_gpt2.yaml", "--eps", eps]) == 2
    assert "--eps" in capsys.readouterr().err


def test_encoder_keys_are_every_real_token_of_the_example():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # an encoder's query sees its example's 3 or 2 tokens
    assert valid_keys_per_row(mask, causal=False).tolist() == [3, 3, 3, 2, 2]
    assert topk_edges_per_query(mask, 2, causal=False) == pytest.approx(2.0)
    assert topk_edges_per_query(mask, 4, causal=False) == pytest.approx((3 * 3 + 2 * 2) / 5)
    assert bracket_ks(mask, 2.5, 4, causal=False) == (2, 3)


def test_an_encoder_with_a_classification_head_is_post_trained(capsys, tmp_path):
    """A BERT classifier: rows carry the task metric (accuracy), valid keys count the whole example, and
    each eps's trajectory (per-step multiplier and drive CE, per-evaluation certification) is kept."""
    assert (
        main(
            [
                "posttrain",
                "search_spaces/tiny_priced.yaml",
                "--eps",
                "0.1",
                "--set",
                "data.source=builtin:majority",
                "--set",
                "objective.dense_steps=20",
                "--set",
                "training.max_steps=10",
                "--set",
                "training.eval_every=5",
                "--out",
                str(tmp_path),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["causal"] is False and out["metric_name"] == "accuracy"
    dense = out["rows"][0]
    assert 0.0 <= dense["metric"] <= 1.0 and dense["perplexity"] is None
    # every query of an example sees all its real tokens: more keys per query than a causal model's mean
    assert out["mean_valid_keys_per_query"] > 4
    traj = out["trajectories"]["0.1"]
    assert [r["step"] for r in traj["steps"]] == list(range(1, 11))
    assert all(r["multiplier"] is not None for r in traj["steps"])
    assert traj["steps"][0]["constraint_ce"] is not None
    assert [e["step"] for e in traj["evaluations"] if "certify_ce" in e] == [0, 5, 10]


def test_library_rejects_negative_eps():
    with pytest.raises(ValueError):
        run_posttrain(tiny_lm_cfg(), [-0.01])


def test_saved_models_reproduce_their_rows(tmp_path):
    """With save_dir, every compared model is a folder that loads back to the row's validation CE (the
    gated one with its gates, in gates mode): what econ-ray circuit and heatmap take."""
    from econ_ray.data import encode_split, load_task_for
    from econ_ray.modeling import load_model
    from econ_ray.training.evaluate import task_loss_and_outputs

    cfg = tiny_lm_cfg()
    out = run_posttrain(cfg, [0.05], save_dir=tmp_path)
    saved = {r["method"]: r for r in out["rows"] if r.get("model_dir")}
    assert set(saved) == {"dense", "gates", "dense_continued"}
    assert saved["gates"]["model_dir"] == str(tmp_path / "gates_eps0.05")
    for method, row in saved.items():
        model, tok, meta = load_model(row["model_dir"])
        assert meta["attention"]["mode"] == ("gates" if method == "gates" else "dense")
        splits = load_task_for(cfg.data, seed=cfg.training.seed)
        val = encode_split(splits.validation, splits.task, tok, cfg.data.max_length)
        ce, _, _ = task_loss_and_outputs(model, val, splits.task, batch_size=64)
        assert ce == pytest.approx(row["ce"], rel=1e-4), method
