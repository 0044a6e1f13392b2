"""The runtime's attention function, FFN observer, layer discovery and install, on hand-made inputs.

Each test pins one behaviour of ``econ_ray/attention/runtime.py`` that a user relies on: the
validity mask, the scaling and dtypes of the attention function, forced edges, structural head
masks, capture, dropout, which modules ``install`` touches and the token mask its hook records.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from econ_ray.attention import install, runtime_of
from econ_ray.attention.runtime import (
    EconRuntime,
    ObservedActivation,
    _find_layers,
    _valid_edges,
    econ_attention_forward,
)
from tests.conftest import tiny_bert_config

NEG = torch.finfo(torch.float32).min


def _module(rt: EconRuntime, *, training: bool = False, bias: list[float] | None = None) -> nn.Module:
    module = nn.Module()
    module.train(training)
    object.__setattr__(module, "econ_runtime", rt)
    object.__setattr__(module, "econ_layer", 0)
    if bias is not None:
        module.econ_gate_bias = nn.Parameter(torch.tensor(bias))
    return module


def _qkv(b=2, h=3, lq=5, dh=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, lq, dh, generator=g, dtype=dtype) for _ in range(3))


# ---- set_mode messages ---------------------------------------------------------------------------


def test_set_mode_names_the_modes_and_the_missing_k():
    rt = EconRuntime()
    with pytest.raises(
        ValueError, match=r"^attention mode must be one of \('dense', 'gates', 'topk', 'budget'\), got 'x'$"
    ):
        rt.set_mode("x")
    with pytest.raises(ValueError, match=r"^topk mode needs k >= 1$"):
        rt.set_mode("topk")


# ---- _valid_edges --------------------------------------------------------------------------------


def test_valid_edges_without_a_mask_is_all_true_bool_on_the_scores_device():
    scores = torch.empty(2, 3, 4, 4, device="meta")
    valid = _valid_edges(None, None, scores)  # square scores and no token mask: nothing to apply
    assert valid.shape == (2, 1, 4, 4) and valid.dtype == torch.bool and valid.device.type == "meta"
    valid = _valid_edges(None, None, torch.zeros(2, 3, 1, 4))
    assert valid.shape == (2, 1, 1, 4) and bool(valid.all())


def test_valid_edges_reads_bool_masks_as_they_are_and_float_masks_above_half_the_minimum():
    scores = torch.zeros(1, 2, 1, 4)
    allowed = torch.tensor([True, False, True, False]).view(1, 1, 1, 4)
    assert torch.equal(_valid_edges(allowed, None, scores), allowed)
    # an additive mask: 0 allowed, the dtype's minimum forbidden; min / 2 is the cut-off (exclusive),
    # so a sum of a forbidden entry and a finite bias still counts as forbidden, min / 2.5 does not
    additive = torch.tensor([0.0, NEG, NEG / 2, NEG / 2.5]).view(1, 1, 1, 4)
    assert _valid_edges(additive, None, scores).flatten().tolist() == [True, False, False, True]


def test_valid_edges_applies_a_token_mask_only_to_square_self_attention_of_its_batch():
    scores = torch.zeros(1, 1, 3, 3)
    tm = torch.tensor([[1, 1, 0]])
    valid = _valid_edges(None, tm, scores)[0, 0]
    assert valid.tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    # a token mask of another batch (shape) is not this call's: ignored
    assert bool(_valid_edges(None, torch.ones(2, 3), scores).all())


# ---- econ_attention_forward ----------------------------------------------------------------------


def test_default_scaling_is_one_over_the_square_root_of_the_head_width():
    # dh = 4 (!= H = 3, != L = 5): scores are q.k / 2
    q, k, v = _qkv()
    out, w = econ_attention_forward(_module(EconRuntime()), q, k, v, None)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2, dim=-1)
    assert torch.allclose(w, expected, atol=1e-6)
    assert torch.allclose(out, (expected @ v).transpose(1, 2), atol=1e-6)


def test_dense_mode_takes_any_broadcastable_additive_mask():
    # a per-head (B, H, Lq, Lk) bias, as an ALiBi-style mask would be: dense attention is plain eager
    q, k, v = _qkv()
    bias = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    _, w = econ_attention_forward(_module(EconRuntime()), q, k, v, bias, scaling=1.0)
    assert torch.allclose(w, torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1), atol=1e-6)


def test_dropout_is_off_by_default_in_training_and_never_applied_in_evaluation():
    q, k, v = _qkv()
    expected = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
    out, _ = econ_attention_forward(_module(EconRuntime(), training=True), q, k, v, None, scaling=1.0)
    assert torch.allclose(out.transpose(1, 2), expected, atol=1e-6)
    out, _ = econ_attention_forward(_module(EconRuntime()), q, k, v, None, scaling=1.0, dropout=0.5)
    assert torch.allclose(out.transpose(1, 2), expected, atol=1e-6)
    out, _ = econ_attention_forward(_module(EconRuntime(), training=True), q, k, v, None, scaling=1.0, dropout=0.0)
    assert torch.allclose(out.transpose(1, 2), expected, atol=1e-6)


def test_output_takes_the_dtype_of_value():
    q, k, _ = _qkv()
    v = torch.randn(2, 3, 5, 4).to(torch.bfloat16)
    out, w = econ_attention_forward(_module(EconRuntime()), q, k, v, None)
    assert out.dtype == torch.bfloat16 and w.dtype == torch.float32


def test_training_gates_use_the_fused_kernel():
    q, k, v = _qkv()
    rt = EconRuntime(mode="gates")
    _, w = econ_attention_forward(_module(rt, training=True, bias=[0.0, 0.0, 0.0]), q, k, v, None)
    assert type(w.grad_fn).__name__ == "_GatedSoftmaxBackward"


@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_keep_strongest_forces_each_rows_strongest_edge_open(training):
    # every gate shut (bias -100 beats any logistic draw): only the forced edges carry weight
    q, k, v = _qkv()
    scores = q @ k.transpose(-1, -2)
    p = torch.softmax(scores, dim=-1)
    strongest = torch.nn.functional.one_hot(scores.argmax(-1), 5).bool()
    for keep_strongest in (True, False):
        rt = EconRuntime(mode="gates", keep_strongest=keep_strongest)
        torch.manual_seed(0)
        _, w = econ_attention_forward(_module(rt, training=training, bias=[-100.0] * 3), q, k, v, None, scaling=1.0)
        expected = p * strongest if keep_strongest else torch.zeros_like(p)
        assert torch.allclose(w, expected, atol=1e-6)


def test_collecting_in_training_samples_stochastic_gates_and_counts_them():
    # gate logits exactly 0: deterministic gates would all be shut; logistic noise opens about half
    q, k, v = (torch.zeros(1, 1, 64, 1) for _ in range(3))
    rt = EconRuntime(mode="gates", collect=True)
    torch.manual_seed(0)
    econ_attention_forward(_module(rt, training=True, bias=[0.0]), q, k, v, None)
    st = rt.stats[0]
    assert st.valid == 64 * 64 and 0.3 * st.valid < st.kept < 0.7 * st.valid


def _masked_run(rt, head_mask, q, k, v):
    rt.head_masks = {0: head_mask}
    return econ_attention_forward(_module(rt), q, k, v, None, scaling=1.0)


def test_a_per_head_mask_zeroes_the_head_and_closes_its_edges():
    q, k, v = _qkv(b=2, h=2, lq=3)
    dense = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
    # (H,) float64: the weights keep their own dtype
    _, w = _masked_run(EconRuntime(collect=True), torch.tensor([1.0, 0.0], dtype=torch.float64), q, k, v)
    assert w.dtype == torch.float32
    assert torch.equal(w[:, 0], dense[:, 0]) and bool((w[:, 1] == 0).all())
    # without statistics nothing else is computed
    rt = EconRuntime()
    _, w = _masked_run(rt, torch.tensor([1.0, 0.0]), q, k, v)
    assert bool((w[:, 1] == 0).all()) and rt.stats == {}
    # statistics: head 1's edges are closed (2 examples x 9 edges of head 0 kept out of 2 x 2 x 9)
    rt = EconRuntime(collect=True)
    _masked_run(rt, torch.tensor([1.0, 0.0]), q, k, v)
    st = rt.stats[0]
    assert (st.kept, st.valid, st.empty_rows) == (18, 36, 6) and st.head_open.tolist() == [True, False]


def test_a_per_example_head_mask_is_applied_per_example():
    q, k, v = _qkv(b=2, h=2, lq=3)
    dense = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
    rt = EconRuntime(collect=True)
    _, w = _masked_run(rt, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), q, k, v)
    assert torch.equal(w[0, 0], dense[0, 0])
    assert bool((w[0, 1] == 0).all()) and bool((w[1] == 0).all())
    assert rt.stats[0].kept == 9


def test_a_head_mask_closes_edges_that_topk_kept():
    q, k, v = _qkv(b=1, h=2, lq=4)
    rt = EconRuntime(mode="topk", k=1, collect=True)
    _masked_run(rt, torch.tensor([0.0, 1.0]), q, k, v)
    assert rt.stats[0].kept == 4  # head 1: one edge per row, head 0 none


def test_capture_stores_the_applied_weights_per_layer():
    q, k, v = _qkv()
    rt = EconRuntime(capture={})
    _, w = econ_attention_forward(_module(rt), q, k, v, None)
    assert torch.equal(rt.capture[0], w)


# ---- ObservedActivation --------------------------------------------------------------------------


def test_ffn_neuron_activity_is_the_union_over_batches():
    rt = EconRuntime(collect=True)
    act = ObservedActivation(nn.ReLU(), rt, 0)
    act(torch.tensor([[[1.0, -1.0, -1.0]]]))
    act(torch.tensor([[[-1.0, 1.0, -1.0]]]))
    assert rt.stats[0].neuron_active.tolist() == [True, True, False]


# ---- layer discovery and install -----------------------------------------------------------------


def test_find_layers_takes_self_attention_only_not_cross_attention():
    from transformers import BertLMHeadModel

    model = BertLMHeadModel(tiny_bert_config(is_decoder=True, add_cross_attention=True))
    found = _find_layers(model)
    assert [type(m).__name__ for m in found.attention_modules] == ["BertSelfAttention"] * 2
    assert [type(p).__name__ for p, _ in found.ffn_parents] == ["BertIntermediate"] * 2


def test_find_layers_skips_gpt2_cross_attention(tiny_gpt2):
    from transformers import GPT2LMHeadModel

    cfg = tiny_gpt2.config.__class__(**tiny_gpt2.config.to_dict())
    cfg.add_cross_attention = True
    model = GPT2LMHeadModel(cfg)
    crosses = [m for m in model.modules() if getattr(m, "is_cross_attention", False)]
    assert len(crosses) == cfg.n_layer  # a GPT2Attention with is_cross_attention in every block
    found = _find_layers(model)
    assert len(found.attention_modules) == cfg.n_layer
    assert not any(m.is_cross_attention for m in found.attention_modules)


def test_find_layers_wraps_only_real_ffn_modules(tiny_gpt2):
    # a module with an activation and an output projection but no c_fc is not a GPT-2 MLP
    tiny_gpt2.adapter = nn.Module()
    tiny_gpt2.adapter.act = nn.ReLU()
    tiny_gpt2.adapter.c_proj = nn.Linear(1, 1)
    found = _find_layers(tiny_gpt2)
    assert [type(p).__name__ for p, attr in found.ffn_parents] == ["GPT2MLP"] * 2
    assert {attr for _, attr in found.ffn_parents} == {"act"}


def test_find_layers_names_the_unsupported_model():
    with pytest.raises(
        ValueError,
        match=r"^Linear: no BERT-family or GPT-2-family self-attention modules found; econ-ray supports those architectures$",
    ):
        _find_layers(nn.Linear(1, 1))


def test_install_defaults_and_bert_ffn_observers(tiny_bert, batch):
    rt = install(tiny_bert)
    found = _find_layers(tiny_bert)
    assert all(bool((m.econ_gate_bias == 3.0).all()) for m in found.attention_modules)
    assert rt.keep_strongest is False and tiny_bert.config.hidden_act == "gelu"
    assert all(isinstance(p.intermediate_act_fn, ObservedActivation) for p, _ in found.ffn_parents)
    rt.need_costs = True
    tiny_bert(input_ids=batch[0], attention_mask=batch[1])
    _, ffn = rt.pop_costs()
    assert len(ffn) == 2


def test_install_keep_strongest_and_relu_on_bert(tiny_bert):
    rt = install(tiny_bert, keep_strongest=True, ffn_activation="relu")
    assert rt.keep_strongest is True and tiny_bert.config.hidden_act == "relu"
    assert isinstance(tiny_bert.bert.encoder.layer[0].intermediate.intermediate_act_fn.act, nn.ReLU)


def test_install_rejects_an_unknown_ffn_activation(tiny_bert):
    with pytest.raises(ValueError, match=r"^ffn_activation must be 'keep' or 'relu', got 'rleu'$"):
        install(tiny_bert, ffn_activation="rleu")


def test_install_twice_names_the_problem(tiny_bert):
    install(tiny_bert)
    with pytest.raises(ValueError, match=r"^econ-ray attention is already installed in this model$"):
        install(tiny_bert)


def test_install_puts_the_gate_biases_on_the_models_device():
    from transformers import BertForSequenceClassification

    with torch.device("meta"):
        model = BertForSequenceClassification(tiny_bert_config())
    install(model)
    assert {m.econ_gate_bias.device.type for m in _find_layers(model).attention_modules} == {"meta"}


def _hook(model):
    return list(model._forward_pre_hooks.values())[-1]


def test_token_mask_hook_defaults_to_all_real_tokens(tiny_bert):
    rt = install(tiny_bert)
    ids = torch.randint(1, 50, (2, 5))
    for args, kwargs in [((ids,), {}), ((), {"input_ids": ids})]:
        rt.token_mask = None
        _hook(tiny_bert)(tiny_bert, args, kwargs)
        assert rt.token_mask is not None
        assert rt.token_mask.dtype == torch.long and rt.token_mask.tolist() == [[1] * 5] * 2
    # on the ids' device
    _hook(tiny_bert)(tiny_bert, (torch.ones(2, 5, dtype=torch.long, device="meta"),), {})
    assert rt.token_mask.device.type == "meta" and rt.token_mask.shape == (2, 5)


def test_token_mask_hook_keeps_a_2d_mask_and_drops_others(tiny_bert):
    rt = install(tiny_bert)
    ids = torch.randint(1, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    _hook(tiny_bert)(tiny_bert, (ids,), {"attention_mask": mask})
    assert rt.token_mask is mask
    _hook(tiny_bert)(tiny_bert, (ids,), {"attention_mask": torch.zeros(2, 1, 5, 5)})
    assert rt.token_mask is None
    _hook(tiny_bert)(tiny_bert, (), {})
    assert rt.token_mask is None
    # a real forward without a mask: every token counts
    tiny_bert(ids)
    assert runtime_of(tiny_bert).token_mask.tolist() == [[1] * 5] * 2


def test_ffn_observer_counts_every_token_without_a_mask_of_its_shape():
    rt = EconRuntime(collect=True)
    act = ObservedActivation(nn.ReLU(), rt, 0)
    act(torch.ones(2, 3, 4))
    assert rt.stats[0].ffn_total == 2 * 3 * 4
    assert math.isclose(rt.stats[0].ffn_nonzero / rt.stats[0].ffn_total, 1.0)
