"""The gate kernels' exact arithmetic, with the random draw fixed: logistic noise, the straight-through
gate, the fused gated softmax, the expected open fraction. Distributional and end-to-end behaviour is
tested in test_attention.py."""

from __future__ import annotations

import math

import pytest
import torch

from econ_ray.attention import kernels as K


def _fixed_rand(monkeypatch, value: float) -> None:
    """Every uniform draw of the kernels returns ``value`` (before the kernels clamp it)."""

    def rand(shape, *, dtype=None, device=None):
        return torch.full(tuple(shape), value, dtype=dtype or torch.get_default_dtype(), device=device)

    monkeypatch.setattr(K.torch, "rand", rand)
    monkeypatch.setattr(K.torch, "rand_like", lambda x: torch.full_like(x, value))


@pytest.mark.parametrize("u", [0.2, 0.5, 0.9])
def test_logistic_noise_is_the_logit_of_the_uniform_draw(monkeypatch, u):
    _fixed_rand(monkeypatch, u)
    noise = K.logistic_noise(torch.Size([3]), like=torch.zeros(3))
    assert torch.allclose(noise, torch.full((3,), math.log(u / (1 - u))))


@pytest.mark.parametrize("u, bound", [(0.0, 1e-6), (1.0, 1 - 1e-6)])
def test_logistic_noise_is_finite_at_the_ends_of_the_draw(monkeypatch, u, bound):
    _fixed_rand(monkeypatch, u)
    noise = K.logistic_noise(torch.Size([2]), like=torch.zeros(2, dtype=torch.float64))
    assert torch.isfinite(noise).all()
    assert noise[0].item() == pytest.approx(math.log(bound / (1 - bound)), rel=1e-6)


def test_logistic_noise_follows_the_dtype_and_device_of_like():
    assert K.logistic_noise(torch.Size([4]), like=torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    assert K.logistic_noise(torch.Size([4]), like=torch.zeros(1, device="meta")).device.type == "meta"
    torch.manual_seed(0)
    a = K.logistic_noise(torch.Size([4000]), like=torch.zeros(1))
    assert a.mean().abs() < 0.1 and a.std() == pytest.approx(math.pi / math.sqrt(3), rel=0.05)  # Logistic(0, 1)


def test_deterministic_gates_open_only_above_zero():
    g = torch.tensor([-1.0, 0.0, 1e-6, 2.0], dtype=torch.float64)
    a = K.sample_gates(g, stochastic=False)
    assert a.dtype == torch.float64 and a.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_stochastic_gates_add_the_noise_and_open_above_zero(monkeypatch):
    monkeypatch.setattr(K, "logistic_noise", lambda shape, *, like: torch.full(shape, 0.5, dtype=like.dtype))
    g = torch.tensor([-0.7, -0.5, -0.3, 0.6], requires_grad=True)
    a = K.sample_gates(g, stochastic=True)
    assert a.dtype == g.dtype and a.tolist() == [0.0, 0.0, 1.0, 1.0]  # g + 0.5 > 0; exactly 0 stays closed
    a.sum().backward()
    s = torch.sigmoid(g.detach() + 0.5)
    assert torch.allclose(g.grad, s * (1 - s))  # the gradient of sigmoid(g + noise)


def test_fused_gate_is_closed_at_exactly_zero_and_forced_edges_stay_open(monkeypatch):
    _fixed_rand(monkeypatch, 0.5)  # noise 0: the gate is 1[g > 0]
    masked = torch.zeros(1, 1, 2, 3)
    g = torch.tensor([[[[0.0, 1.0, -1.0], [0.0, 0.0, 0.0]]]], requires_grad=True)
    force = torch.tensor([[[[False, False, False], [False, False, True]]]])
    w = K.gated_softmax(masked, g, force)
    assert torch.allclose(w * 3, torch.tensor([[[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]]))
    w.sum().backward()
    # d g = p * s (1 - s) with s = sigmoid(g); none for the forced edge
    s = torch.sigmoid(g.detach())
    expect = s * (1 - s) / 3
    expect[0, 0, 1, 2] = 0.0
    assert torch.allclose(g.grad, expect)


@pytest.mark.parametrize("u", [0.0, 1.0])
def test_fused_gate_clamps_the_draw(monkeypatch, u):
    _fixed_rand(monkeypatch, u)
    g = torch.zeros(1, 1, 1, 2, requires_grad=True)
    w = K.gated_softmax(torch.zeros(1, 1, 1, 2), g)
    w.sum().backward()
    assert torch.isfinite(g.grad).all() and (g.grad > 0).all()  # s = sigmoid(+-13.8): a small, finite gradient
    assert w.tolist() == [[[[0.5 * u, 0.5 * u]]]]  # the draw near 1 opens, near 0 closes
    assert g.grad[0, 0, 0, 0].item() == pytest.approx(0.5 * 1e-6, rel=0.1)  # float32 rounds 1 - 1e-6


def test_expected_open_fraction_of_a_single_valid_edge():
    g = torch.tensor([[[[2.0, -1.0]]]], dtype=torch.float64)
    valid = torch.tensor([[[[True, False]]]])
    f = K.expected_open_fraction(g, valid)
    assert f.dtype == torch.float64 and f.item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())


def test_runtime_of_a_model_without_econ_attention_names_the_model():
    from econ_ray.attention import runtime_of

    with pytest.raises(ValueError, match=r"^Linear: econ-ray attention is not installed in this model$"):
        runtime_of(torch.nn.Linear(1, 1))


def test_gate_parameters_are_one_bias_vector_per_layer(tiny_bert):
    from econ_ray.attention import gate_parameters, install

    install(tiny_bert)
    biases = gate_parameters(tiny_bert)
    n_layers, n_heads = tiny_bert.config.num_hidden_layers, tiny_bert.config.num_attention_heads
    assert len(biases) == n_layers and all(b.shape == (n_heads,) for b in biases)


def test_budget_count_is_compared_in_float64():
    # one query row with four valid edges and a budget just under 3: float32 would round it to 3.0
    scores = torch.tensor([[[[4.0, 3.0, 2.0, 1.0]]]])
    valid = torch.ones_like(scores, dtype=torch.bool)
    budget = 2.9999999999
    assert torch.tensor(budget, dtype=torch.float32).item() == 3.0
    assert K.budget_keep(scores, valid, budget).sum().item() == 2


def test_budget_keeps_an_edge_that_lies_exactly_on_the_threshold():
    # float32 bisection ends with the threshold on the score one ulp above the cut: kept, not dropped
    up = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0)).item()
    scores = torch.tensor([[[[0.0, 1.0, up, 5.0]]]])
    valid = torch.ones_like(scores, dtype=torch.bool)
    t = K.budget_threshold(scores, valid, 2.0)
    assert t.item() == up
    assert K.budget_keep(scores, valid, 2.0).tolist() == [[[[False, False, True, True]]]]


def test_budget_threshold_of_an_example_does_not_depend_on_its_batch():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 2, 5, 5, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(4, 1, 1, 1)
    valid = torch.ones_like(scores, dtype=torch.bool)
    valid[2, :, :, 3:] = False
    together = K.budget_threshold(scores, valid, 2.5)
    alone = torch.cat([K.budget_threshold(scores[i : i + 1], valid[i : i + 1], 2.5) for i in range(4)])
    assert together.shape == (4, 1, 1, 1)
    assert torch.equal(together, alone)


def test_budget_threshold_is_finite_for_an_example_without_valid_edges():
    scores = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]]])
    valid = torch.tensor([[[[True, True]]], [[[False, False]]]])
    t = K.budget_threshold(scores, valid, 1.0)
    assert torch.isfinite(t).all()
    assert K.budget_keep(scores, valid, 1.0).tolist() == [[[[False, True]]], [[[False, False]]]]


def _observed(layer=1, **fields):
    from econ_ray.attention.runtime import EconRuntime, ObservedActivation

    rt = EconRuntime(**fields)
    return rt, ObservedActivation(torch.nn.ReLU(), rt, layer)


H = torch.tensor([[[0.2, -0.1, 0.3], [-0.2, 0.1, 0.0]]])  # (B=1, L=2, I=3), sum |h| = 0.9 < 1


def test_ffn_observer_applies_its_own_layers_neuron_mask():
    mask = torch.tensor([1.0, 0.0, 1.0])
    _, own = _observed(layer=1, neuron_masks={1: mask})
    assert torch.equal(own(H), torch.relu(H) * mask)
    _, other = _observed(layer=0, neuron_masks={1: mask})
    assert torch.equal(other(H), torch.relu(H))


def test_ffn_cost_without_a_token_mask_counts_every_position_exactly():
    rt, act = _observed(need_costs=True)
    act(H)
    assert rt.ffn_costs[1].item() == pytest.approx(0.6 / 0.9)  # sum ReLU(h) / sum |h|, both below 1
    rt.token_mask = torch.ones(1, 5)  # a mask of another shape (not this call's tokens) is ignored
    act(H)
    assert rt.ffn_costs[1].item() == pytest.approx(0.6 / 0.9)
    rt.token_mask = torch.tensor([[1.0, 0.0]])  # the second token is padding
    act(H)
    assert rt.ffn_costs[1].item() == pytest.approx(0.5 / 0.6)


def test_ffn_statistics_accumulate_over_batches():
    rt, act = _observed(collect=True)
    act(H)
    act(H)
    st = rt.stats[1]
    assert (st.ffn_nonzero, st.ffn_total) == (2 * 3, 2 * 6)
    assert st.neuron_active.tolist() == [True, True, True]
