"""Attention capture hook and dense-vs-sparse heatmaps on tiny models (fast)."""

import json

import pytest
import torch

from econ_ray.attention import install
from econ_ray.cli.main import main
from econ_ray.experiments import heatmap as hm


def test_capture_is_off_by_default_and_changes_nothing(tiny_gpt2, batch):
    ids, mask = batch
    rt = install(tiny_gpt2, mode="gates")
    assert rt.capture is None
    with torch.no_grad():
        ref = tiny_gpt2(input_ids=ids, attention_mask=mask).logits
        assert rt.capture is None  # nothing stored when off
        rt.capture = {}
        out = tiny_gpt2(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(out, ref)
    assert sorted(rt.capture) == [0, 1]
    assert rt.capture[0].shape == (3, 4, 9, 9)
    assert not rt.capture[0].requires_grad


def test_captured_probabilities_are_what_attention_applies(tiny_gpt2, batch):
    ids, mask = batch
    rt = install(tiny_gpt2, mode="dense")
    inp = hm.Input({"input_ids": ids[:1], "attention_mask": mask[:1]}, [str(i) for i in ids[0].tolist()])
    dense = hm.attention_maps(tiny_gpt2, rt, inp, mode="dense")
    assert rt.capture is None and rt.mode == "dense"  # restored
    rows = dense[0].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)  # softmax rows sum to 1
    assert torch.all(dense[0].triu(1) == 0)  # causal
    top1 = hm.attention_maps(tiny_gpt2, rt, inp, mode="topk", k=1)
    assert torch.all((top1[1] > 0).sum(-1) == 1)  # one edge per query
    with torch.no_grad():
        tiny_gpt2.transformer.h[0].attn.econ_gate_bias.fill_(-50.0)  # every gate of layer 0 closed
    gated = hm.attention_maps(tiny_gpt2, rt, inp, mode="gates")
    assert torch.all(gated[0] == 0) and gated[1].sum() > 0


@pytest.mark.parametrize(("layers", "heads"), [([0], [1]), ([0, 1], [0, 2])])
def test_render_draws_one_row_per_head(tiny_gpt2, batch, tmp_path, layers, heads):
    import matplotlib.image

    ids, mask = batch
    rt = install(tiny_gpt2, mode="gates")
    inp = hm.Input({"input_ids": ids[:1], "attention_mask": mask[:1]}, [f"t{i}" for i in range(9)])
    dense = hm.attention_maps(tiny_gpt2, rt, inp, mode="dense")
    sparse = hm.attention_maps(tiny_gpt2, rt, inp, mode="topk", k=2)
    out = hm.render(
        dense,
        sparse,
        layers=layers,
        heads=heads,
        tokens=inp.tokens,
        causal=True,
        out=tmp_path / "h.png",
        sparse_label="top-2",
    )
    n = len(layers) * len(heads)
    assert len(out["panels"]) == 2 * n
    assert [p["column"] for p in out["panels"][:2]] == ["dense", "top-2"]
    kept = out["panels"][1]["kept_fraction"]
    assert kept == pytest.approx((1 + 2 * 8) / 45)  # top-2 on 9 causal positions: 17 of 45 edges
    height = matplotlib.image.imread(out["file"]).shape[0]
    assert height == pytest.approx(3.3 * 120 * n, abs=2)  # one 3.3 in row per head at 120 dpi


def test_check_selection():
    hm.check_selection(2, 4, [0, 1], [3])
    with pytest.raises(ValueError, match="layer 2 is out of range"):
        hm.check_selection(2, 4, [0, 2], [0])
    with pytest.raises(ValueError, match="head 4"):
        hm.check_selection(2, 4, [0], [4])


@pytest.fixture(scope="module")
def saved_lm(tmp_path_factory):
    from econ_ray.modeling import save_model
    from econ_ray.training import train_run
    from tests.unit.test_posttrain import tiny_lm_cfg

    cfg = tiny_lm_cfg(max_steps=5)
    cfg.objective.dense_steps = 5
    res = train_run(cfg)
    p = res.prepared
    return save_model(
        tmp_path_factory.mktemp("m") / "lm",
        p.model,
        p.tokenizer,
        task=p.task,
        config=cfg.model_dump(),
        summary=res.summary,
    )


def test_cli_heatmap_text_and_index(saved_lm, tmp_path, capsys):
    out = tmp_path / "h.png"
    assert (
        main(
            [
                "heatmap",
                str(saved_lm),
                "--layers",
                "0,1",
                "--heads",
                "0",
                "--text",
                "1 2 + 3 4 = 4 6",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.stat().st_size > 5000 and len(res["panels"]) == 4
    assert res["tokens"][1:] == ["1", "2", "+", "3", "4", "=", "4", "6"]  # BOS first, as the task encodes
    assert res["sparse_mode"] == "gates"
    assert (
        main(
            [
                "heatmap",
                str(saved_lm),
                "--dense-model",
                str(saved_lm),
                "--layers",
                "1",
                "--heads",
                "0,3",
                "--index",
                "2",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["panels"]) == 4


@pytest.mark.parametrize(
    ("flag", "value"), [("--layers", "2"), ("--heads", "7"), ("--layers", "x"), ("--index", "999")]
)
def test_cli_heatmap_bad_selection_exits_2(saved_lm, tmp_path, capsys, flag, value):
    args = {"--layers": "0", "--heads": "0", flag: value}
    argv = ["heatmap", str(saved_lm), "--out", str(tmp_path / "h.png")]
    for k, v in args.items():
        argv += [k, v]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("econ-ray: error:")
    assert not (tmp_path / "h.png").exists()
