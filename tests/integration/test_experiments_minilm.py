"""The experiment commands as scripts/results.sh runs them, on the pretrained MiniLM (shortened):
train --save, topk, ablation from the saved model, heatmap of a priced model, report of the tree."""

import json

import pytest

from econ_ray.cli.main import main

pytestmark = pytest.mark.integration

FILE = "search_spaces/minilm_similarity.yaml"
SMALL = [
    "--set",
    "data.builtin.n_train=300",
    "--set",
    "data.builtin.n_validation=100",
    "--set",
    "training.eval_every=10",
]


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_experiment_commands_on_minilm(tmp_path, capsys):
    dense = tmp_path / "dense"
    assert (
        main(
            [
                "train",
                FILE,
                "--attention",
                "dense",
                "--lam",
                "0",
                "--max-steps",
                "20",
                "--set",
                "objective.dense_steps=20",
                *SMALL,
                "--save",
                str(dense),
                "--json",
            ]
        )
        == 0
    )
    assert _last_json(capsys)["model"] == "minilm"
    from_dense = [
        "--set",
        f"model.name={dense}/model",
        "--set",
        "objective.dense_reference=model",
        "--set",
        "objective.dense_steps=0",
        "--set",
        "training.max_steps=10",
        *SMALL,
    ]

    assert main(["topk", str(dense), "--k", "8,2", "--out", str(tmp_path / "topk"), "--json"]) == 0
    rows = _last_json(capsys)["rows"]
    assert [r["k"] for r in rows] == [8, 2] and rows[0]["attention_density"] > rows[1]["attention_density"]

    assert (
        main(
            [
                "ablation",
                FILE,
                "--lam",
                "3",
                "--variants",
                "dense,both",
                *from_dense,
                "--out",
                str(tmp_path / "ablation"),
                "--json",
            ]
        )
        == 0
    )
    abl = {r["variant"]: r for r in _last_json(capsys)["rows"]}
    assert abl["dense"]["attention_density"] == 1.0 and abl["both"]["attention_density"] < 1.0

    gated = tmp_path / "gated"
    assert main(["train", FILE, "--lam", "3", *from_dense, "--save", str(gated), "--json"]) == 0
    capsys.readouterr()
    png = tmp_path / "heatmap" / "heatmap.png"
    assert (
        main(
            [
                "heatmap",
                str(gated),
                "--dense-model",
                str(dense),
                "--layers",
                "0,5",
                "--heads",
                "0,11",
                "--index",
                "0",
                "--out",
                str(png),
                "--json",
            ]
        )
        == 0
    )
    assert png.stat().st_size > 1000

    assert main(["report", str(tmp_path), "--json"]) == 0
    text = (tmp_path / "report.md").read_text()
    for section in ("Top-k and budget sweep", "Ablation of the compute price", "Attention heatmaps"):
        assert section in text
    assert f"{abl['both']['metric']:.4g}" in text  # numbers come from the files
