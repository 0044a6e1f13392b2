"""training.gate_key_bias: the key biases of gated attention learn with the gate biases (issue 18).

The premise, pinned here: q_i . b_k shifts every logit of query i by the same amount, which softmax
ignores (a dense model's output does not move) but the gate logit q_i . k_j / sqrt(d) + b_h sees.
"""

import pytest
import torch

from econ_ray.attention.runtime import runtime_of
from econ_ray.config import parse_config
from econ_ray.training import train_run
from econ_ray.training.engine import key_biases, param_groups
from econ_ray.training.loop import prepare


def cfg(name="tiny-bert", mode="gates", source="builtin:majority", **training):
    return parse_config(
        {
            "model": {
                "name": name,
                "tiny": {"layers": 2, "hidden": 32, "heads": 4, "intermediate": 64},
                "dropout": 0.0,
            },
            "data": {
                "source": source,
                "max_length": 24,
                "heldout_fraction": 0.2,
                "builtin": {"n_train": 400, "n_validation": 100}
                | ({"max_len": 20, "noise_pct": 10} if source == "builtin:majority" else {}),
            },
            "attention": {"mode": mode},
            "objective": {"kind": "constrained", "tau_rel": 0.05, "dense_steps": 30, "constraint_batch_size": 40}
            if mode == "gates"
            else {"dense_steps": 0},
            "training": {
                "lr": 1e-4,
                "gate_lr": 5e-2,
                "batch_size": 32,
                "max_steps": 20,
                "eval_every": 10,
                "seed": 0,
                "progress": False,
                **training,
            },
        },
        "key_bias.yaml",
    )


def _batch(p, n=8):
    return p.validation.batch(slice(0, n))


def _key_modules(model):
    return [m for m in model.modules() if hasattr(m, "econ_gate_bias")]


def test_a_key_bias_shift_leaves_dense_outputs_alone_and_moves_the_gates():
    p = prepare(cfg())
    model, batch = p.model.eval(), _batch(p)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    rt = runtime_of(model)

    def outputs():
        rt.set_mode("dense")
        dense = model(**inputs).logits
        rt.set_mode("gates")  # deterministic gates in eval: 1[q.k/sqrt(d) + b_h > 0]
        return dense, model(**inputs).logits

    with torch.no_grad():
        for m in _key_modules(model):
            m.econ_gate_bias.fill_(0.0)  # about half the gates open: a shift of the logits changes which
        dense, gated = outputs()
        for m in _key_modules(model):
            m.key.bias.add_(torch.randn_like(m.key.bias) * 3.0)
        dense_shifted, gated_shifted = outputs()
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max())  # noqa: E731 (an untrained head's logits are small)
    assert rel(dense_shifted, dense) < 1e-4, "softmax must ignore q . b_k"
    assert rel(gated_shifted, gated) > 1e-2, "the gates must see q . b_k"


def test_the_option_puts_each_gated_key_bias_in_the_gate_group():
    p = prepare(cfg())
    keys = {id(m.key.bias) for m in _key_modules(p.model)}
    assert len(keys) == 2  # one per layer
    # a dense phase (the mode prepare leaves): b_k's gradient is rounding noise there, kept at lr
    dense = param_groups(p.model, lr=1e-4, gate_lr=5e-2, weight_decay=0.01, gate_key_bias=True)
    assert not keys & {id(q) for g in dense if g["lr"] == 5e-2 for q in g["params"]}
    runtime_of(p.model).set_mode("gates")
    plain = param_groups(p.model, lr=1e-4, gate_lr=5e-2, weight_decay=0.01)
    with_keys = param_groups(p.model, lr=1e-4, gate_lr=5e-2, weight_decay=0.01, gate_key_bias=True)
    gate_group = lambda groups: next(g for g in groups if g["lr"] == 5e-2)  # noqa: E731
    assert not keys & {id(q) for q in gate_group(plain)["params"]}
    assert keys <= {id(q) for q in gate_group(with_keys)["params"]}
    assert gate_group(with_keys)["weight_decay"] == 0.0
    # every parameter in exactly one group either way
    for groups in (plain, with_keys):
        ids = [id(q) for g in groups for q in g["params"]]
        assert len(ids) == len(set(ids)) == sum(1 for q in p.model.parameters() if q.requires_grad)


def test_key_biases_move_at_the_gate_learning_rate_in_post_training():
    def moved(flag):
        c = cfg(gate_key_bias=flag)
        p = prepare(c)
        start = [m.key.bias.detach().clone() for m in _key_modules(p.model)]
        del p
        res = train_run(c)
        end = [m.key.bias.detach() for m in _key_modules(res.prepared.model)]
        return max(float((a - b).abs().max()) for a, b in zip(start, end))

    # lr 1e-4 over 20 steps moves a bias by at most ~2e-3; gate_lr 5e-2 moves it by far more
    assert moved(True) > 10 * moved(False)


def test_a_model_without_a_separate_key_projection_is_refused_in_one_line():
    p = prepare(cfg(name="tiny-gpt2", source="builtin:addition", gate_key_bias=True))
    with pytest.raises(ValueError, match="training.gate_key_bias: .*no separate key"):
        key_biases(p.model)
