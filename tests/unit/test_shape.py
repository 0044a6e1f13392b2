"""model_dims reads either family's spelling of the shape facts (econ_ray.compute.shape), on plain objects."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from econ_ray.compute import ModelDims, model_dims

BERT_NAMES = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=96)
GPT2_NAMES = dict(n_layer=3, n_embd=32, n_head=2, n_inner=80)


def test_either_spelling_of_every_field() -> None:
    assert model_dims(SimpleNamespace(**BERT_NAMES)) == ModelDims(n_layers=2, hidden=64, n_heads=4, intermediate=96)
    assert model_dims(SimpleNamespace(**GPT2_NAMES)) == ModelDims(n_layers=3, hidden=32, n_heads=2, intermediate=80)
    # the BERT spelling first; a None there falls through to the GPT-2 one
    both = SimpleNamespace(
        num_hidden_layers=None, n_layer=5, hidden_size=16, n_embd=99, num_attention_heads=None, n_head=8
    )
    assert model_dims(both) == ModelDims(n_layers=5, hidden=16, n_heads=8, intermediate=64)


def test_missing_ffn_width_is_four_times_hidden() -> None:
    assert model_dims(SimpleNamespace(n_layer=1, n_embd=24, n_head=3, n_inner=None)).intermediate == 96


@pytest.mark.parametrize("missing", ["n_layer", "n_embd", "n_head"])
def test_each_missing_size_raises(missing: str) -> None:
    fields = {k: v for k, v in GPT2_NAMES.items() if k != missing}
    with pytest.raises(ValueError, match=r"^config lacks layer/hidden/head sizes: SimpleNamespace$"):
        model_dims(SimpleNamespace(**fields))


def test_a_model_is_read_through_its_config_but_a_config_is_read_itself() -> None:
    model = SimpleNamespace(config=SimpleNamespace(**GPT2_NAMES))
    assert model_dims(model).n_layers == 3
    # an object with to_dict is a config, even when one of its fields is called "config"
    cfg = SimpleNamespace(**BERT_NAMES, config=SimpleNamespace(**GPT2_NAMES), to_dict=dict)
    assert model_dims(cfg).n_layers == 2
