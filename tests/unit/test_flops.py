"""FLOPs formulas against torch's FlopCounterMode and against hand-computed sparsity examples."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
)

from econ_ray.compute import (
    ARCHS,
    ArchShape,
    FlopCount,
    LayerSparsity,
    ModelDims,
    count_flops,
    dense_flops,
    effective_flops,
    model_dims,
    shape_from_hf_config,
)

L = 16
BERT_TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=100)
GPT2_TINY = dict(
    n_layer=2, n_embd=64, n_head=4, n_inner=128, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0
)

# Tiny BERT (d=64, I=128, H=4, 2 layers) at L=16, by hand:
#   Q,K,V,O per layer: 4 * 2*16*64*64 = 524_288
#   FFN per layer:     2*16*64*128 + 2*16*128*64 = 524_288
#   attention / layer: 2 * 2*16*16*64 = 65_536
#   pooler: 2*64*64 = 8_192
TINY = ArchShape(
    n_layers=2,
    hidden=64,
    n_heads=4,
    intermediate=128,
    vocab_size=100,
    causal=False,
    pooler=True,
    n_labels=None,
    lm_head=False,
)


def _ids(vocab: int = 100, seq_len: int = L) -> torch.Tensor:
    return torch.randint(0, vocab, (1, seq_len), generator=torch.Generator().manual_seed(0))


def test_dense_tiny_by_hand() -> None:
    f = dense_flops(TINY, L)
    assert f.linear == 2 * (524_288 + 524_288) + 8_192
    assert f.attention == 2 * 65_536
    assert f.total == 2_105_344 + 131_072
    assert f.total_g == pytest.approx(f.total / 1e9)
    assert f.linear_g == pytest.approx(2_105_344 / 1e9)
    assert f.attention_g == pytest.approx(131_072 / 1e9)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("variant", ["bert", "bert-cls3", "gpt2"])
def test_formula_matches_flop_counter(impl: str, variant: str) -> None:
    torch.manual_seed(0)
    if variant == "bert":
        config = BertConfig(attn_implementation=impl, **BERT_TINY)
        model = BertModel(config)
        shape = shape_from_hf_config(config)
    elif variant == "bert-cls3":
        config = BertConfig(attn_implementation=impl, num_labels=3, **BERT_TINY)
        model = BertForSequenceClassification(config)
        shape = shape_from_hf_config(config, n_labels=3)
    else:
        config = GPT2Config(attn_implementation=impl, **GPT2_TINY)
        model = GPT2LMHeadModel(config)
        shape = shape_from_hf_config(config)
        assert shape.causal and shape.lm_head and not shape.pooler
    model.eval()
    measured = count_flops(model, _ids())
    f = dense_flops(shape, L)
    # The CPU sdpa kernel is invisible to FlopCounterMode, eager's two bmm calls are not.
    expected = f.linear if impl == "sdpa" else f.total
    assert measured == pytest.approx(expected, rel=0.02)
    assert measured == expected  # the convention is built to be exact


def test_bert_cls3_adds_classifier_on_cls_only() -> None:
    shape = shape_from_hf_config(BertConfig(**BERT_TINY), n_labels=3)
    assert dense_flops(shape, L).linear - dense_flops(TINY, L).linear == 2 * 64 * 3


def test_bert_base_real_shape() -> None:
    torch.manual_seed(0)
    config = BertConfig(attn_implementation="sdpa")
    model = BertModel(config).eval()
    measured = count_flops(model, _ids(config.vocab_size, 128))
    assert measured == pytest.approx(21.744451584e9, rel=1e-3)
    from_config = dense_flops(shape_from_hf_config(config), 128)
    from_table = dense_flops(ARCHS["bert-base"], 128)
    assert from_config == from_table
    assert from_table.linear == pytest.approx(21.744451584e9, rel=1e-3)
    assert from_table.linear == 21_744_451_584
    assert from_table.total == 21_744_451_584 + 603_979_776  # eager reading 22.34843136e9


def test_gpt2_table_matches_recorded_readings() -> None:
    f = dense_flops(ARCHS["gpt2"], 128)
    assert f.linear == 31_624_200_192  # addmm 21_743_271_936 + tied LM head mm 9_880_928_256
    assert f.total == 32_228_179_968
    assert shape_from_hf_config(GPT2Config()) == ARCHS["gpt2"]


def test_shape_from_gpt2_config_defaults_inner_to_4d() -> None:
    cfg = GPT2Config(n_layer=3, n_embd=32, n_head=2, n_inner=None, vocab_size=50)
    shape = shape_from_hf_config(cfg, lm_head=False)
    assert (shape.n_layers, shape.hidden, shape.n_heads, shape.intermediate) == (3, 32, 2, 128)
    assert shape.head_dim == 16
    assert shape.causal and not shape.lm_head


def test_model_dims_reads_both_families_from_a_config_or_a_model() -> None:
    bert = BertConfig(**BERT_TINY)
    assert model_dims(bert) == ModelDims(n_layers=2, hidden=64, n_heads=4, intermediate=128)
    assert model_dims(bert).head_dim == 16
    gpt2 = GPT2Config(n_layer=3, n_embd=32, n_head=2, n_inner=None, vocab_size=50)
    assert model_dims(gpt2) == ModelDims(n_layers=3, hidden=32, n_heads=2, intermediate=128)
    assert model_dims(GPT2LMHeadModel(gpt2)) == model_dims(gpt2)
    with pytest.raises(ValueError, match="lacks"):
        model_dims(object())


def test_shape_from_bert_decoder_is_causal() -> None:
    assert shape_from_hf_config(BertConfig(is_decoder=True, **BERT_TINY)).causal
    assert not shape_from_hf_config(BertConfig(**BERT_TINY)).causal


def _dense_layers(n: int = 2) -> list[LayerSparsity]:
    return [LayerSparsity(attention_density=1.0, dead_heads=0, ffn_density=1.0, dead_neurons=0)] * n


@pytest.mark.parametrize("arch", ["bert-base", "gpt2"])
def test_dense_sparsity_equals_dense_flops(arch: str) -> None:
    shape = ARCHS[arch]
    assert effective_flops(shape, 128, _dense_layers(shape.n_layers)) == dense_flops(shape, 128)


def test_effective_one_dead_head() -> None:
    layers = [LayerSparsity(attention_density=0.75, dead_heads=1), LayerSparsity(attention_density=1.0)]
    f = effective_flops(TINY, L, layers)
    # 3 of 4 heads alive in layer 0: Q,K,V,O 524_288 -> 393_216.
    # Attention products, 2*16*16*64 = 32_768 each per layer: layer 0 Q K^T of 3 live heads 24_576
    # plus A V at density 0.75 24_576; layer 1 dense 65_536.
    assert f.linear == 2_105_344 - 131_072
    assert f.attention == 24_576 + 24_576 + 65_536


def test_effective_half_attention_density() -> None:
    layers = [LayerSparsity(attention_density=0.5), LayerSparsity(attention_density=0.5)]
    f = effective_flops(TINY, L, layers)
    assert f.linear == 2_105_344
    # per layer: Q K^T in full 32_768 (every head is live) + A V at half density 16_384
    assert f.attention == 2 * (32_768 + 16_384)


# A 1-layer shape small enough to count by hand: L=4, d=8, H=2 (d_head=4), I=16, no head on top.
#   Q,K,V,O: 4 * 2*4*8*8 = 2_048; FFN up 2*4*8*16 = 1_024, down 1_024; linear 4_096.
#   Q K^T: per head 2*4*4*4 = 128, both heads 256; A V the same: dense attention 512.
SMALL = ArchShape(
    n_layers=1,
    hidden=8,
    n_heads=2,
    intermediate=16,
    vocab_size=10,
    causal=False,
    pooler=False,
    n_labels=None,
    lm_head=False,
)


def test_small_dense_by_hand() -> None:
    assert dense_flops(SMALL, 4) == FlopCount(linear=4_096, attention=512)
    assert effective_flops(SMALL, 4, [LayerSparsity(attention_density=1.0)]) == FlopCount(linear=4_096, attention=512)


def test_sparse_edges_save_only_the_av_product() -> None:
    # density 0.25, both heads live: Q K^T 256 in full + A V 256 * 0.25 = 64 (the old rule said 512 * 0.25 = 128)
    f = effective_flops(SMALL, 4, [LayerSparsity(attention_density=0.25)])
    assert f.attention == 256 + 64
    assert f.linear == 4_096


def test_one_dead_head_saves_both_products_of_that_head() -> None:
    # head 1 dead, density 0.25 over both heads (head 0 keeps half its edges):
    # Q K^T of the live head 128 + A V 64; Q,K,V,O of one head 1_024 (the old rule said 128 attention)
    f = effective_flops(SMALL, 4, [LayerSparsity(attention_density=0.25, dead_heads=1)])
    assert f.attention == 128 + 64
    assert f.linear == 1_024 + 1_024 + 1_024


def test_all_heads_dead_costs_no_attention() -> None:
    f = effective_flops(SMALL, 4, [LayerSparsity(attention_density=0.0, dead_heads=2)])
    assert f.attention == 0.0
    assert f.linear == 1_024 + 1_024  # Q, K, V, O gone; the FFN stays


def test_no_kept_edge_on_live_heads_still_pays_every_score() -> None:
    # density 0 but no head dead (e.g. different edges per example): Q K^T 256 in full, A V 0
    f = effective_flops(SMALL, 4, [LayerSparsity(attention_density=0.0, dead_heads=0)])
    assert f.attention == 256
    assert f.total == 4_096 + 256


def test_effective_dead_neurons_and_ffn_density() -> None:
    layers = [LayerSparsity(attention_density=1.0, ffn_density=0.25, dead_neurons=32), LayerSparsity(1.0)]
    f = effective_flops(TINY, L, layers)
    # Layer 0: W1 2*16*64*(128-32) = 196_608 (was 262_144); W2 262_144 * 0.25 = 65_536.
    assert f.linear == 2_105_344 - (262_144 - 196_608) - (262_144 - 65_536)
    assert f.attention == 131_072


def test_effective_combined() -> None:
    layers = [
        LayerSparsity(attention_density=0.5, dead_heads=1, ffn_density=0.25, dead_neurons=32),
        LayerSparsity(attention_density=1.0),
    ]
    f = effective_flops(TINY, L, layers)
    # Layer 0: 393_216 + 196_608 + 65_536 = 655_360 linear; attention Q K^T of 3 live heads 24_576
    # + A V at density 0.5 16_384. Layer 1: dense 1_048_576 linear, 65_536 attention. Pooler 8_192.
    assert f == FlopCount(linear=655_360 + 1_048_576 + 8_192, attention=24_576 + 16_384 + 65_536)


def test_effective_keeps_head_flops() -> None:
    gpt = ARCHS["gpt2"]
    all_dead = [LayerSparsity(attention_density=0.0, dead_heads=12, ffn_density=0.0, dead_neurons=3072)] * 12
    f = effective_flops(gpt, 128, all_dead)
    assert f.linear == 2 * 128 * 768 * 50257
    assert f.attention == 0.0
    assert math.isclose(f.total_g, 9.880928256)


@pytest.mark.parametrize(
    "layers, match",
    [
        (_dense_layers(1), "2 LayerSparsity"),
        ([LayerSparsity(1.5), LayerSparsity(1.0)], r"layer 0: attention_density must be in \[0, 1\], got 1.5"),
        ([LayerSparsity(-0.1), LayerSparsity(1.0)], "attention_density"),
        ([LayerSparsity(1.0, ffn_density=1.2), LayerSparsity(1.0)], "ffn_density"),
        ([LayerSparsity(1.0, dead_heads=5), LayerSparsity(1.0)], "dead_heads"),
        ([LayerSparsity(1.0, dead_heads=-1), LayerSparsity(1.0)], "dead_heads"),
        ([LayerSparsity(1.0, dead_neurons=129), LayerSparsity(1.0)], "dead_neurons"),
        ([LayerSparsity(1.0, dead_heads=1), LayerSparsity(1.0)], "live-head fraction"),
        ([LayerSparsity(0.76, dead_heads=1), LayerSparsity(1.0)], "live-head fraction"),
    ],
)
def test_effective_rejects_bad_input(layers: list[LayerSparsity], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        effective_flops(TINY, L, layers)


def test_bad_shapes_and_lengths() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ArchShape(2, 65, 4, 128, 100, causal=False, pooler=True, n_labels=None, lm_head=False)
    with pytest.raises(ValueError, match="seq_len"):
        dense_flops(TINY, 0)


SHAPE_FIELDS = ("n_layers", "hidden", "n_heads", "intermediate", "vocab_size")


@pytest.mark.parametrize("field", SHAPE_FIELDS)
def test_arch_shape_names_the_size_that_is_not_positive(field: str) -> None:
    sizes = dict(n_layers=2, hidden=64, n_heads=4, intermediate=128, vocab_size=100)
    sizes[field] = 0
    with pytest.raises(ValueError, match=rf"^ArchShape\.{field} must be positive, got 0$"):
        ArchShape(**sizes, causal=False, pooler=True, n_labels=None, lm_head=False)


def test_arch_shape_accepts_the_smallest_sizes_and_one_label() -> None:
    # one layer, one head of width 1, one neuron, one token, one label: all valid
    one = ArchShape(1, 1, 1, 1, 1, causal=False, pooler=False, n_labels=1, lm_head=False)
    assert one.head_dim == 1
    assert dense_flops(one, 1).linear == 4 * 2 + 2 * 2 + 2  # Q,K,V,O + FFN up and down + classifier
    with pytest.raises(ValueError, match=r"^n_labels must be positive or None, got 0$"):
        ArchShape(1, 1, 1, 1, 1, causal=False, pooler=False, n_labels=0, lm_head=False)


def test_head_flops_add_up_when_a_model_has_several_heads() -> None:
    # pooler + classifier on CLS + LM head on every position, each by hand, on one arch
    d, V, L_ = 8, 10, 5
    base = ArchShape(1, d, 2, 16, V, causal=False, pooler=False, n_labels=None, lm_head=False)
    both = ArchShape(1, d, 2, 16, V, causal=False, pooler=True, n_labels=3, lm_head=True)
    extra = dense_flops(both, L_).linear - dense_flops(base, L_).linear
    assert extra == 2 * d * d + 2 * 1 * d * 3 + 2 * L_ * d * V


def test_causal_classifier_scores_every_position() -> None:
    d, L_ = 8, 5
    plain = ArchShape(1, d, 2, 16, 10, causal=True, pooler=False, n_labels=None, lm_head=False)
    cls = ArchShape(1, d, 2, 16, 10, causal=True, pooler=False, n_labels=3, lm_head=False)
    assert dense_flops(cls, L_).linear - dense_flops(plain, L_).linear == 2 * L_ * d * 3


def test_shape_from_a_plain_config_object() -> None:
    from types import SimpleNamespace

    sizes = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)
    # no model_type and no is_decoder: an encoder, with the pooler unless told otherwise
    s = shape_from_hf_config(SimpleNamespace(**sizes, vocab_size=100))
    assert (s.causal, s.pooler, s.lm_head) == (False, True, False)
    assert shape_from_hf_config(SimpleNamespace(**sizes, vocab_size=100), pooler=False).pooler is False
    # no vocabulary: an error naming the config's type, not an AttributeError
    with pytest.raises(ValueError, match=r"^config lacks layer/hidden/head/vocab sizes: SimpleNamespace$"):
        shape_from_hf_config(SimpleNamespace(**sizes))
    # sizes missing, vocabulary there: the same error
    with pytest.raises(ValueError, match=r"^config lacks layer/hidden/head/vocab sizes: SimpleNamespace$"):
        shape_from_hf_config(SimpleNamespace(vocab_size=100))


def test_density_equal_to_the_live_fraction_is_valid_and_length_one_counts() -> None:
    half_dead = [LayerSparsity(0.5, dead_heads=2), LayerSparsity(1.0)]
    f = effective_flops(TINY, L, half_dead)
    # layer 0: half the heads' scores and half the values; layer 1 dense
    assert f.attention == 2 * L * L * 64 * (0.5 + 0.5) + 2 * (2 * L * L * 64)
    assert dense_flops(TINY, 1).attention == 2 * 2 * (2 * 1 * 1 * 64)


def test_density_at_the_live_fraction_plus_rounding_slack_is_accepted() -> None:
    # one of 4 heads dead: live fraction 0.75; the check allows 1e-9 of rounding above it, inclusive
    ok = [LayerSparsity(0.75 + 1e-9, dead_heads=1), LayerSparsity(1.0)]
    assert effective_flops(TINY, L, ok).total > 0
