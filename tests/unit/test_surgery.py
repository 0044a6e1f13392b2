"""Model surgery: pruning scores on constructed cases, masks seen by effective FLOPs, physical export."""

import json

import pytest
import torch

from econ_ray.attention import install
from econ_ray.cli.main import main
from econ_ray.compute import count_flops
from econ_ray.data import EncodedSplit, TaskSpec
from econ_ray.experiments.baselines import parse_ratios, run_baselines, topk_k, write_baselines
from econ_ray.experiments.export import export
from econ_ray.surgery import masks, scores
from econ_ray.surgery.physical import load_pruned
from econ_ray.training.evaluate import evaluate
from tests.conftest import tiny_bert_config

L = 10
CLS = TaskSpec("t", "classification", 2, "accuracy")


def _split(n=24, labels=2, lm=False, seed=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 50, (n, L), generator=g)
    am = torch.ones_like(ids)
    if lm:
        return EncodedSplit(ids, am, ids.clone(), None)
    return EncodedSplit(ids, am, torch.randint(0, labels, (n,), generator=g), None)


def _bert():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config(hidden_act="gelu")).eval()


# ---- pure scores -----------------------------------------------------------------------------


def test_keep_lowest_removed_is_global_and_deterministic():
    s = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1]])
    keep = scores.keep_lowest_removed(s, 0.5)  # 3 of 6 go: 0.1 (0,1), 0.1 (1,2), 0.2 (1,0)
    assert keep.tolist() == [[True, False, True], [False, True, False]]
    assert scores.keep_lowest_removed(s, 0.0).all()
    assert [k.sum().item() for k in scores.keep_per_layer([s[0], s[1]], 1 / 3)] == [2, 2]


def test_michel_normalisation_is_per_layer_l2():
    imp = torch.tensor([[3.0, 4.0], [0.6, 0.8]])
    assert torch.allclose(scores.normalise_per_layer(imp), torch.tensor([[0.6, 0.8], [0.6, 0.8]]))


def test_magnitude_score_is_invariant_to_relu_rescaling():
    w1, w2 = torch.tensor([[1.0, 2.0], [0.0, 3.0]]), torch.tensor([[4.0, 1.0], [0.0, 1.0]])
    s = scores.ffn_magnitude_scores(w1, w2)
    assert s.tolist() == pytest.approx([5**0.5 * 4, 3 * 2**0.5])
    w1r, w2r = w1.clone(), w2.clone()
    w1r[0] *= 10
    w2r[:, 0] /= 10
    assert torch.allclose(scores.ffn_magnitude_scores(w1r, w2r), s)


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan")])
def test_bad_ratio_raises(bad):
    with pytest.raises(ValueError):
        scores.check_ratio(bad)
    with pytest.raises(ValueError):
        parse_ratios(f"0.1,{bad}")


def test_topk_k_from_ratio():
    assert [topk_k(r, 32) for r in (0.0, 0.5, 0.99)] == [32, 16, 1]


# ---- head importance and masks on a real model ---------------------------------------------------


def test_head_importance_finds_a_head_that_does_nothing():
    model = _bert()
    hd = 8
    with torch.no_grad():  # head 2 of layer 1 writes nothing: its O-projection input columns are zero
        model.bert.encoder.layer[1].attention.output.dense.weight[:, 2 * hd : 3 * hd] = 0
    rt = install(model, mode="dense")
    raw = masks.head_importance(model, rt, _split(), CLS, batch_size=8, n_batches=2)
    assert raw.shape == (2, 4)
    assert raw[1, 2] == 0 and (raw.flatten().nonzero().numel() == 7)
    keep = scores.keep_lowest_removed(scores.normalise_per_layer(raw), 1 / 8)
    assert keep.tolist() == [[True] * 4, [True, True, False, True]]
    assert rt.head_masks == {}  # scoring leaves no mask behind


def test_masks_change_effective_flops_by_the_pruned_work_and_clear_exactly():
    model = _bert()
    rt = install(model, mode="dense")
    split = _split()
    dense = evaluate(model, rt, split, CLS, batch_size=8, seq_len=L)
    assert dense["ffn_density"] == 1.0 and dense["effective_gflops"] == pytest.approx(dense["dense_total_gflops"])
    d, h = 32, 4
    heads = torch.tensor([[True, False, True, True], [False, False, True, True]])
    neurons = [torch.arange(64) >= 16, torch.ones(64, dtype=torch.bool)]
    with masks.masked(rt, heads=heads, neurons=neurons):
        ev = evaluate(model, rt, split, CLS, batch_size=8, seq_len=L)
    assert ev["dead_heads"] == 3 and ev["dead_neurons"] == 16
    per_head = (4 * 2 * L * d * d + 2 * 2 * L * L * d) / h  # Q, K, V, O slices and both attention products
    per_neuron = 2 * L * d + 2 * L * d  # W1 row and W2 column
    saved = (dense["effective_gflops"] - ev["effective_gflops"]) * 1e9
    assert saved == pytest.approx(3 * per_head + 16 * per_neuron, rel=1e-9)
    assert ev["metric"] != dense["metric"] or ev["ce"] != dense["ce"]
    assert rt.head_masks == {} and rt.neuron_masks == {}
    again = evaluate(model, rt, split, CLS, batch_size=8, seq_len=L)
    assert again["ce"] == dense["ce"]


def test_baselines_rows_and_files(tmp_path):
    model = _bert()
    rt = install(model, mode="dense")
    rows = run_baselines(
        model,
        rt,
        _split(),
        _split(seed=4),
        CLS,
        seq_len=L,
        methods=["ffn-magnitude", "ffn-activation", "heads", "topk"],
        ratios=[0.25, 0.5],
        batch_size=8,
        calib_batches=2,
    )
    assert [(r["method"], r["ratio"]) for r in rows][:3] == [
        ("dense", 0.0),
        ("ffn-magnitude", 0.25),
        ("ffn-magnitude", 0.5),
    ]
    by = {(r["method"], r["ratio"]): r for r in rows}
    assert by[("heads", 0.5)]["dead_heads"] == 4 and by[("ffn-activation", 0.25)]["dead_neurons"] == 32
    assert by[("topk", 0.5)]["k"] == 5
    for m in ("ffn-magnitude", "ffn-activation", "heads", "topk"):
        assert (
            by[(m, 0.5)]["effective_gflops"]
            < by[(m, 0.25)]["effective_gflops"]
            < by[("dense", 0.0)]["effective_gflops"]
        )
        for key in (
            "metric_name",
            "metric",
            "effective_gflops",
            "dense_total_gflops",
            "attention_density",
            "ffn_density",
        ):
            assert by[(m, 0.5)][key] is not None
    paths = write_baselines(tmp_path, rows)
    assert json.loads(paths["json"].read_text()) == rows and paths["plot"].stat().st_size > 1000


def _gpt2_tiny():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=50, n_positions=64, bos_token_id=0, eos_token_id=0
        )
    ).eval()


# ---- physical pruning ------------------------------------------------------------------------------


def test_export_bert_round_trip_equals_masked_model(tmp_path):
    model = _bert()
    rt = install(model, mode="dense")
    masks.set_head_keep(rt, torch.tensor([[True, False, True, False], [False] * 4]))
    masks.set_neuron_keep(rt, [torch.arange(64) % 3 == 0, torch.ones(64, dtype=torch.bool)])
    rep = export(model, None, _split(), CLS, seq_len=L, out=tmp_path / "small", warmup=1, repeats=3)
    assert rep["equal"] and rep["output_abs_diff"] <= 1e-4
    assert rep["heads_per_layer"] == [2, 0] and rep["heads_kept"] == 2  # layer 1 loses its attention sublayer
    assert rep["intermediate_per_layer"] == [22, 64]
    assert rep["params_pruned"] < rep["params_dense"]
    assert rep["counted_pruned_gflops"] == pytest.approx(rep["pruned_gflops"], rel=1e-9)  # formula = FlopCounterMode
    assert rep["theoretical_speedup"] >= rep["structural_speedup"] * (1 - 1e-12) and rep["structural_speedup"] > 1
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "small", trust_remote_code=True).eval()
    assert plain.config.heads_per_layer == [2, 0]
    ids = torch.randint(1, 50, (1, L))
    assert count_flops(plain, ids) > 0
    assert json.loads((tmp_path / "small" / "export.json").read_text())["equal"] is True


def test_export_gpt2_with_closed_gates(tmp_path):
    model = _gpt2_tiny()
    install(model, mode="gates")
    for b in masks.blocks(model):  # heads 1 and 3 closed everywhere
        b.attn.econ_gate_bias.data = torch.tensor([3.0, -1e4, 3.0, -1e4])
    rep = export(
        model,
        None,
        _split(lm=True),
        TaskSpec("t", "lm", 0, "perplexity"),
        seq_len=L,
        out=tmp_path / "g",
        warmup=1,
        repeats=3,
    )
    assert rep["equal"] and rep["heads_per_layer"] == [2, 2]
    assert type(load_pruned(tmp_path / "g")).__name__ == "PrunedGPT2LMHeadModel"


def test_a_uniform_cut_exports_as_a_stock_model_that_loads_without_remote_code(tmp_path):
    """Every head kept and the same FFN width in every layer: a stock BertConfig (intermediate_size
    shrunk), plain from_pretrained, no trust_remote_code, same outputs as the masked model."""
    from transformers import AutoModelForSequenceClassification

    model = _bert()
    rt = install(model, mode="dense")
    masks.set_neuron_keep(rt, [torch.arange(64) % 4 == 0, torch.arange(64) % 4 == 1])  # 16 of 64 each
    rep = export(model, None, _split(), CLS, seq_len=L, out=tmp_path / "stock", warmup=1, repeats=3)
    assert rep["format"] == "stock" and rep["equal"]
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "stock").eval()  # no remote code
    assert type(plain).__name__ == "BertForSequenceClassification" and plain.config.intermediate_size == 16
    assert not list((tmp_path / "stock").glob("*.py"))
    ids = _split().input_ids[:2]
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        got = plain(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert (ref - got).abs().max() <= 1e-4


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_whole_sublayers_are_removed_and_counted_as_removed(tmp_path, family):
    """A layer with no head left loses its attention sublayer and one with no neuron its FFN: the
    exported model computes what the masked one did, and FlopCounterMode counts exactly the static
    FLOPs of the kept units (nothing for a placeholder)."""
    from econ_ray.compute import shape_from_hf_config, static_flops

    if family == "bert":
        model, task, split = _bert(), CLS, _split()
    else:
        model = _gpt2_tiny()
        task, split = TaskSpec("t", "lm", 0, "perplexity"), _split(lm=True)
    rt = install(model, mode="dense")
    masks.set_head_keep(rt, torch.tensor([[False] * 4, [True, False, True, True]]))
    masks.set_neuron_keep(rt, [torch.arange(64) % 2 == 0, torch.zeros(64, dtype=torch.bool)])
    rep = export(model, None, split, task, seq_len=L, out=tmp_path / family, warmup=1, repeats=3)
    assert rep["equal"] and rep["format"] == "custom", rep
    assert rep["heads_per_layer"] == [0, 3] and rep["intermediate_per_layer"] == [32, 0]
    shape = shape_from_hf_config(model.config, n_labels=None if task.kind == "lm" else 2, lm_head=task.kind == "lm")
    assert rep["pruned_gflops"] * 1e9 == pytest.approx(static_flops(shape, L, [0, 3], [32, 0]).total)
    assert rep["counted_pruned_gflops"] == pytest.approx(rep["pruned_gflops"], rel=1e-9)


# ---- CLI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["prune", "search_spaces/tiny_priced.yaml", "--ratios", "0.1,1.5"],
        ["prune", "search_spaces/tiny_priced.yaml", "--ratios", "a,b"],
        ["prune", "search_spaces/tiny_priced.yaml", "--method", "heads,magnitude"],
        ["prune", "search_spaces/tiny_priced.yaml", "--overlay", "/nonexistent-run"],
    ],
)
def test_cli_prune_bad_input_exits_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("econ-ray: error: ")


def test_cli_export_needs_a_model_folder(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not an econ-ray model folder" in capsys.readouterr().err


def test_cli_prune_and_export_on_a_saved_model(tmp_path, capsys):
    from econ_ray.modeling import save_model
    from econ_ray.training import train_run
    from tests.unit.test_training import tiny_cfg

    cfg = tiny_cfg(attention={"mode": "dense"}, kind="penalised", lam=0.0)
    cfg.objective.dense_steps, cfg.training.max_steps, cfg.training.eval_every = 5, 5, 5
    cfg.data.builtin.update(n_train=120, n_validation=40)
    res = train_run(cfg)
    p = res.prepared
    folder = save_model(tmp_path / "m", p.model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=res.summary)
    assert (
        main(
            [
                "prune",
                str(folder),
                "--method",
                "heads,ffn-activation",
                "--ratios",
                "0.5",
                "--calib-batches",
                "1",
                "--out",
                str(tmp_path / "out"),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["method"], r["ratio"]) for r in out["rows"]] == [("dense", 0.0), ("heads", 0.5), ("ffn-activation", 0.5)]
    assert (
        main(["export", str(folder), "--out", str(tmp_path / "small"), "--repeats", "2", "--warmup", "0", "--json"])
        == 0
    )
    rep = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rep["equal"] is True and rep["realised_speedup"] > 0


@pytest.mark.parametrize("family,mode", [("bert", "gates"), ("gpt2", "gates"), ("bert", "topk")])
def test_an_export_with_partially_gated_heads_is_the_evaluated_model_in_plain_transformers(tmp_path, family, mode):
    """Heads that keep some edges only: the export carries the gates (or top-k) in its own code, and
    from_pretrained in a fresh process, through the task class and AutoModel, reproduces the evaluated
    model within 1e-4; a fully closed head is removed."""
    if family == "bert":
        model, task, split = _bert(), CLS, _split()
    else:
        model, task, split = _gpt2_tiny(), TaskSpec("t", "lm", 0, "perplexity"), _split(lm=True)
    rt = install(model, mode=mode, k=2 if mode == "topk" else None)
    if mode == "gates":
        for b in masks.blocks(model):  # heads 0-2 partially open (bias 0: edges with q.k > 0), head 3 closed
            b.attn.econ_gate_bias.data = torch.tensor([0.0, 0.05, -0.05, -1e4])
    rep = export(model, None, split, task, seq_len=L, out=tmp_path / "e", warmup=1, repeats=2)
    assert rep["exported_attention"] == mode and rep["format"] == "custom"
    assert rep["plain_transformers_equal"], rep
    assert rep["plain_transformers_abs_diff"] <= 1e-4 and rep["plain_transformers_hidden_abs_diff"] <= 1e-4
    assert rep["plain_transformers_base_class"] in ("PrunedBertModel", "PrunedGPT2Model")
    assert rep["equal"]
    if mode == "gates":
        assert all(1 <= h <= 3 for h in rep["heads_per_layer"])  # the closed head is gone, partial ones stay
        assert 0 < rt.layer(0).kept < rt.layer(0).valid  # the kept heads really drop edges
    # the same weights with every edge kept (what stock attention computes) are a different model:
    # what the export had to carry
    from transformers import AutoModel

    base = AutoModel.from_pretrained(tmp_path / "e", trust_remote_code=True).eval()
    ids = split.input_ids[:4]
    with torch.no_grad():
        kept = base(input_ids=ids).last_hidden_state
        for m in base.modules():
            if getattr(m, "econ_mode", None) == "gates":
                m.econ_gate_bias.data.fill_(1e4)
            elif getattr(m, "econ_mode", None) == "topk":
                m.econ_k = 10**6
        every_edge = base(input_ids=ids).last_hidden_state
    assert (kept - every_edge).abs().max() > 1e-3


def test_budget_attention_is_refused_in_one_line(tmp_path):
    from econ_ray.surgery.physical import ExportRefused

    model = _bert()
    install(model, mode="budget", budget=2.0)
    with pytest.raises(ExportRefused, match="threshold-budget attention cannot be exported"):
        export(model, None, _split(), CLS, seq_len=L, out=tmp_path / "b", warmup=1, repeats=2)
    assert not (tmp_path / "b").exists()


def test_a_saved_gated_model_is_not_loaded_silently_as_stock_attention(tmp_path):
    """`train --save` of a gated model: plain transformers refuses its model/ folder (it would run stock
    attention over every edge); econ_ray.load_model loads it with its gates, reproducing its outputs."""
    from transformers import AutoModelForSequenceClassification

    from econ_ray.modeling import load_model, save_model
    from econ_ray.training import train_run
    from tests.unit.test_training import tiny_cfg

    cfg = tiny_cfg(attention={"mode": "gates"}, kind="penalised", lam=0.1)
    cfg.objective.dense_steps, cfg.training.max_steps, cfg.training.eval_every = 3, 3, 3
    cfg.data.builtin.update(n_train=60, n_validation=20)
    res = train_run(cfg)
    p = res.prepared
    folder = save_model(tmp_path / "m", p.model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=res.summary)
    conf = json.loads((folder / "model" / "config.json").read_text())
    assert conf["model_type"] == "econ_gated_bert" and "econ-ray export" in conf["econ_ray"]
    with pytest.raises(ValueError, match="econ_gated_bert"):
        AutoModelForSequenceClassification.from_pretrained(folder / "model")
    model, _, _ = load_model(folder)
    ids = p.validation.input_ids[:4]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, p.model.eval()(input_ids=ids).logits, rtol=0, atol=1e-6)
