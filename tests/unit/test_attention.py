"""econ-ray attention installed in real transformers models: dense equivalence, gates, top-k, budget."""

import math

import pytest
import torch

from econ_ray.attention import gate_parameters, install, kernels


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_gpt2"])
def test_dense_mode_reproduces_the_stock_model(family, batch, request):
    model = request.getfixturevalue(family)
    ids, mask = batch
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        install(model, mode="dense")
        out = model(input_ids=ids, attention_mask=mask).logits
    assert model.config._attn_implementation == "econ"
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_gpt2"])
def test_install_changes_no_weight(family, request):
    model = request.getfixturevalue(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    install(model, mode="gates")
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert set(after) - set(before) == {k for k in after if k.endswith("econ_gate_bias")}


def _open_edges(model, ids, mask):
    rt = model.econ_runtime
    rt.reset_stats()
    rt.collect = True
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    rt.collect = False
    return rt.stats


def test_gates_respect_causal_and_padding_masks(tiny_gpt2, batch):
    ids, mask = batch
    rt = install(tiny_gpt2, mode="gates", gate_bias_init=100.0)  # every gate open
    stats = _open_edges(tiny_gpt2, ids, mask)
    heads = 4
    # valid causal edges over real tokens: n(n+1)/2 per sequence of n real tokens, per head
    lengths = mask.sum(1).tolist()
    expected = heads * sum(n * (n + 1) // 2 for n in lengths)
    assert stats[0].valid == expected
    assert stats[0].kept == expected
    assert rt.mode == "gates"


def test_gate_closed_everywhere_gives_zero_attention(tiny_bert, batch):
    ids, mask = batch
    install(tiny_bert, mode="gates", gate_bias_init=-100.0)
    stats = _open_edges(tiny_bert, ids, mask)
    assert all(s.kept == 0 for s in stats.values())
    assert all(s.empty_rows == s.rows for s in stats.values())
    assert all(not s.head_open.any() for s in stats.values())


def test_gates_are_deterministic_in_eval_and_stochastic_in_training(tiny_bert, batch):
    ids, mask = batch
    install(tiny_bert, mode="gates", gate_bias_init=0.0)
    with torch.no_grad():
        a = tiny_bert(input_ids=ids, attention_mask=mask).logits
        b = tiny_bert(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(a, b)
    tiny_bert.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c = tiny_bert(input_ids=ids, attention_mask=mask).logits
        d = tiny_bert(input_ids=ids, attention_mask=mask).logits
    assert not torch.equal(c, d)


def test_attention_cost_has_gradient_wrt_query_key_and_gate_bias(tiny_bert, batch):
    """A degenerate (constant) attention cost would leave these gradients zero."""
    ids, mask = batch
    rt = install(tiny_bert, mode="gates", gate_bias_init=1.0)
    rt.need_costs = True
    tiny_bert.train()
    tiny_bert(input_ids=ids, attention_mask=mask)
    attn, _ = rt.pop_costs()
    assert len(attn) == 2
    torch.stack(attn).mean().backward()
    sa = tiny_bert.bert.encoder.layer[0].attention.self
    assert sa.query.weight.grad is not None and sa.query.weight.grad.abs().sum() > 0
    assert sa.key.weight.grad is not None and sa.key.weight.grad.abs().sum() > 0
    for p in gate_parameters(tiny_bert):
        assert p.grad is not None and (p.grad > 0).all()  # more bias -> more open edges -> more cost


def test_ffn_cost_has_gradient_and_relu_switch(tiny_gpt2, batch):
    ids, mask = batch
    rt = install(tiny_gpt2, mode="dense", ffn_activation="relu")
    assert tiny_gpt2.config.activation_function == "relu"
    rt.need_costs = True
    rt.collect = True
    tiny_gpt2.train()
    tiny_gpt2(input_ids=ids, attention_mask=mask)
    _, ffn = rt.pop_costs()
    assert len(ffn) == 2 and all(0 <= c.item() <= 1 for c in (x.detach() for x in ffn))
    torch.stack(ffn).mean().backward()
    assert tiny_gpt2.transformer.h[0].mlp.c_fc.weight.grad.abs().sum() > 0
    st = rt.stats[0]
    assert 0 < st.ffn_nonzero < st.ffn_total  # ReLU makes real zeros


def test_topk_keeps_k_per_row(tiny_bert, batch):
    ids, mask = batch
    install(tiny_bert, mode="topk", k=2)
    stats = _open_edges(tiny_bert, ids, mask)
    for s in stats.values():
        assert s.kept == 2 * s.rows  # random-init scores have no ties


def test_budget_mode_hits_the_mean_budget(tiny_bert, batch):
    ids, mask = batch
    install(tiny_bert, mode="budget", budget=3.0)
    stats = _open_edges(tiny_bert, ids, mask)
    for s in stats.values():
        assert s.kept / s.rows == pytest.approx(3.0, abs=0.05)


def test_budget_threshold_is_per_example_by_hand():
    # one head, two query rows of three keys each, budget 1.5 edges per row = 3 edges per example:
    # each row keeps its strongest edge, the third edge is the example's next-highest score
    a = torch.tensor([[3.0, 2.0, 0.0], [1.0, 0.5, -1.0]])
    b = torch.tensor([[10.0, 9.0, 8.0], [7.0, 6.0, 5.0]])
    scores = torch.stack([a, b])[:, None]  # (2, 1, 2, 3)
    valid = torch.ones(2, 1, 2, 3, dtype=torch.bool)
    keep = kernels.budget_keep(scores, valid, 1.5)
    expected = [[True, True, False], [True, False, False]]
    # a threshold shared by the batch would keep 4 + 2 edges in b and 2 + 0 in a
    assert keep[0, 0].tolist() == expected
    assert keep[1, 0].tolist() == expected
    t = kernels.budget_threshold(scores, valid, 1.5)
    assert t.shape == (2, 1, 1, 1)
    assert 0.5 < t[0].item() <= 2.0 and 6.0 < t[1].item() <= 9.0


def test_budget_keep_meets_each_examples_budget_and_ignores_the_others():
    torch.manual_seed(3)
    b, h, n = 5, 3, 10
    scores = torch.randn(b, h, n, n) * torch.tensor([0.1, 1.0, 10.0, 3.0, 0.5]).view(b, 1, 1, 1)
    lengths = [10, 7, 4, 9, 2]
    tm = torch.zeros(b, n, dtype=torch.bool)
    for i, length in enumerate(lengths):
        tm[i, :length] = True
    valid = (tm[:, None, :, None] & tm[:, None, None, :]).expand(b, 1, n, n)
    masked = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    budget = 2.5
    keep = kernels.budget_keep(masked, valid, budget)
    assert not (keep & ~valid).any()
    for i, length in enumerate(lengths):
        rows = h * length
        mean = keep[i].sum().item() / rows
        per_row_max = min(budget, length)  # an example with fewer keys than the budget keeps them all
        # edges are added one at a time as the threshold falls: the best count <= budget is within one edge
        assert per_row_max - 1 / rows < mean <= per_row_max + 1e-9, (i, mean)
        assert keep[i].any(dim=-1)[:, :length].all()  # every real row keeps at least its strongest edge
        alone = kernels.budget_keep(masked[i : i + 1], valid[i : i + 1], budget)
        assert torch.equal(alone[0], keep[i])


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_gpt2"])
def test_budget_mode_output_of_an_example_does_not_depend_on_its_batch(family, request):
    model = request.getfixturevalue(family)
    install(model, mode="budget", budget=2.0)
    torch.manual_seed(5)
    n, length = 32, 12
    ids = torch.randint(1, 50, (n, length))
    mask = torch.ones(n, length, dtype=torch.long)
    for i in range(n):
        mask[i, 2 + i % (length - 2) :] = 0  # 2 to 11 real tokens: every padding length
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        for i in range(n):
            one = model(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1]).logits
            assert torch.allclose(one[0], full[i], atol=1e-6), i


def test_topk_full_equals_dense(tiny_bert, batch):
    ids, mask = batch
    with torch.no_grad():
        ref = tiny_bert(input_ids=ids, attention_mask=mask).logits
        install(tiny_bert, mode="topk", k=9)
        out = tiny_bert(input_ids=ids, attention_mask=mask).logits
    assert (out - ref).abs().max() <= 1e-5


def test_straight_through_gate_value_and_gradient():
    g = torch.tensor([[-2.0, 0.5, 3.0]], requires_grad=True)
    a = kernels.sample_gates(g, stochastic=True)
    assert set(a.detach().unique().tolist()) <= {0.0, 1.0}
    a.sum().backward()
    assert (g.grad > 0).all()
    det = kernels.sample_gates(g.detach(), stochastic=False)
    assert det.tolist() == [[0.0, 1.0, 1.0]]


def test_install_twice_is_an_error(tiny_bert):
    install(tiny_bert)
    with pytest.raises(ValueError, match="already installed"):
        install(tiny_bert)


def test_fused_gated_softmax_matches_the_unfused_gradients():
    torch.manual_seed(0)
    masked = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    masked[..., -1] = torch.finfo(masked.dtype).min  # a masked key
    g = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    force = kernels.strongest_edge(masked)
    for f in (None, force):
        m1, g1 = masked.clone().requires_grad_(), g.clone().requires_grad_()
        torch.manual_seed(1)
        w1 = kernels.gated_softmax(m1, g1, f)
        # the unfused reference with the same noise draw
        torch.manual_seed(1)
        u = torch.rand_like(g).clamp_(1e-6, 1 - 1e-6)
        m2, g2 = masked.clone().requires_grad_(), g.clone().requires_grad_()
        noisy = g2 + torch.log(u) - torch.log1p(-u)
        soft = torch.sigmoid(noisy)
        gate = (noisy > 0).to(g.dtype) + (soft - soft.detach())
        if f is not None:
            gate = torch.where(f, torch.ones_like(gate), gate)
        w2 = torch.softmax(m2, dim=-1) * gate
        up = torch.randn_like(w1)
        (w1 * up).sum().backward()
        (w2 * up).sum().backward()
        assert torch.allclose(w1, w2.detach())
        assert torch.allclose(m1.grad, m2.grad, atol=1e-10)
        assert torch.allclose(g1.grad, g2.grad, atol=1e-10)


def test_expected_open_fraction_broadcasts_valid():
    g = torch.randn(2, 4, 3, 3)
    valid = torch.rand(2, 1, 3, 3) > 0.3
    ref = (torch.sigmoid(g) * valid.expand_as(g)).sum() / valid.expand_as(g).sum()
    assert torch.allclose(kernels.expected_open_fraction(g, valid), ref)


def test_runtime_override_sets_fields_for_a_block_and_restores_them():
    from econ_ray.attention.runtime import EconRuntime

    rt = EconRuntime(keep_strongest=True)
    rt.set_mode("budget", budget=4.0)
    masks = rt.head_masks
    with rt.override(mode="topk", k=2, need_costs=True, head_masks={}) as same:
        assert same is rt
        assert (rt.mode, rt.k, rt.budget, rt.need_costs) == ("topk", 2, 4.0, True)
        assert rt.head_masks is not masks
    assert (rt.mode, rt.k, rt.budget, rt.need_costs, rt.keep_strongest) == ("budget", None, 4.0, False, True)
    assert rt.head_masks is masks
    with pytest.raises(RuntimeError), rt.override(collect=True, mode="dense"):
        assert rt.collect and rt.mode == "dense"
        raise RuntimeError("boom")
    assert not rt.collect and rt.mode == "budget"
    with pytest.raises(ValueError, match="topk mode needs k"), rt.override(mode="topk", k=None):
        pass
    assert rt.mode == "budget"
    with pytest.raises(TypeError, match="no field"), rt.override(stochastic=False):
        pass
    # a row keeps at least its strongest edge: a mean below 1 edge per query cannot be reached
    with pytest.raises(ValueError, match="budget >= 1"), rt.override(budget=0.5):
        pass
    assert rt.budget == 4.0
    rt.set_mode("budget", budget=1.0)


# ---- hand-made tensors through the runtime's attention function and FFN observer -----------------
# Each test below pins one rule of METHOD sections 3-5 with values computed by hand.

NEG = torch.finfo(torch.float32).min


def _attend(rt, query, key, value, allowed, *, bias=None, training=False):
    """econ_attention_forward on a bare module (layer 0): (output (B, L, H, dh), weights (B, H, Lq, Lk)).

    ``allowed`` is a bool (B, 1, Lq, Lk) edge mask, turned into the additive mask transformers passes."""
    from econ_ray.attention.runtime import econ_attention_forward
    from tests.unit.test_runtime import _module

    mask = torch.zeros(allowed.shape).masked_fill(~allowed, NEG)
    return econ_attention_forward(_module(rt, training=training, bias=bias), query, key, value, mask, scaling=1.0)


def _col(*xs):
    """(1, 1, L, 1): one head of width 1 with these entries."""
    return torch.tensor(xs, dtype=torch.float32).view(1, 1, -1, 1)


def test_gini_and_entropy_count_only_valid_keys_and_real_query_rows():
    from econ_ray.attention.runtime import EconRuntime

    # causal, 4 tokens, the last one padding: real rows 0, 1, 2 may see 1, 2, 3 keys
    causal = torch.ones(4, 4).tril().bool()
    tm = torch.tensor([[1, 1, 1, 0]])
    allowed = (causal & tm.bool()[0][None, :]).view(1, 1, 4, 4)
    rt = EconRuntime(mode="dense", collect=True)
    rt.token_mask = tm
    # k = (1, 0, 0, 0): rows with q = 0 are uniform over their keys; the padding row (q = 100) is one-hot
    _, w = _attend(rt, _col(0, 0, 0, 100), _col(1, 0, 0, 0), _col(0, 0, 0, 0), allowed)
    assert torch.allclose(w[0, 0, 2], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0]))
    st = rt.stats[0]
    # rows 0-2 are uniform over their valid keys: Gini 0 each (counted over 4 positions it would be
    # 3/4, 1/2, 1/4); the padding row (Gini 2/3, entropy 0) is not a real query and must not count
    assert st.gini_n == 3 and st.entropy_n == 3
    assert st.gini_sum == pytest.approx(0.0, abs=1e-6)
    # entropies 0, 1, log2(3) bits
    assert st.entropy_sum == pytest.approx(0.0 + 1.0 + math.log2(3), abs=1e-6)
    assert (st.valid, st.kept, st.rows) == (1 + 2 + 3, 6, 3)


def test_gated_softmax_does_not_renormalise_closed_edges():
    # training kernel: equal scores, two gates open for sure (logit 100 >> any logistic noise), two closed
    masked = torch.zeros(1, 1, 1, 4)
    gate_logits = torch.tensor([100.0, 100.0, -100.0, -100.0]).view(1, 1, 1, 4)
    w = kernels.gated_softmax(masked, gate_logits)
    assert w.flatten().tolist() == [0.25, 0.25, 0.0, 0.0]  # renormalised it would be 0.5, 0.5
    # evaluation path of the runtime: scores q.k = (2, -2, 0, 0), bias 0.5 -> gate logits
    # (2.5, -1.5, 0.5, 0.5): edge 1 closed, its softmax mass e^-2 / Z dropped, not spread over the others
    from econ_ray.attention.runtime import EconRuntime

    rt = EconRuntime(mode="gates", collect=True)
    q, k = torch.ones(1, 1, 1, 1), _col(2, -2, 0, 0)
    v = _col(1, 1, 1, 1)  # output = sum of the weights
    allowed = torch.ones(1, 1, 1, 4, dtype=torch.bool)
    out, w = _attend(rt, q, k, v, allowed, bias=[0.5])
    z = math.exp(2) + math.exp(-2) + 2
    expected = torch.tensor([math.exp(2) / z, 0.0, 1 / z, 1 / z])
    assert torch.allclose(w.flatten(), expected, atol=1e-6)
    assert out.item() == pytest.approx(1 - math.exp(-2) / z, abs=1e-6)
    assert (rt.stats[0].kept, rt.stats[0].valid) == (3, 4)


def test_topk_renormalises_over_the_kept_edges():
    from econ_ray.attention.runtime import EconRuntime

    # scores ln(4, 2, 1, 1): softmax (1/2, 1/4, 1/8, 1/8); top-2 keeps the first two, renormalised (2/3, 1/3)
    rt = EconRuntime(mode="topk", k=2)
    k = _col(math.log(4), math.log(2), 0, 0)
    out, w = _attend(rt, torch.ones(1, 1, 1, 1), k, _col(3, 0, 0, 0), torch.ones(1, 1, 1, 4, dtype=torch.bool))
    assert torch.allclose(w.flatten(), torch.tensor([2 / 3, 1 / 3, 0, 0]), atol=1e-6)
    assert out.item() == pytest.approx(2.0, abs=1e-5)  # 3 * 2/3 (without renormalising: 3 * 1/2)
    # budget mode renormalises the same way: B = 1 keeps the strongest edge only, weight 1
    rt.set_mode("budget", budget=1.0)
    _, w = _attend(rt, torch.ones(1, 1, 1, 1), k, _col(3, 0, 0, 0), torch.ones(1, 1, 1, 4, dtype=torch.bool))
    assert torch.allclose(w.flatten(), torch.tensor([1.0, 0, 0, 0]), atol=1e-6)


@pytest.mark.parametrize(
    "act, nonzero, active",
    [
        # GELU(-1) = -0.159, GELU(-0.5) = -0.154, GELU(0) = 0, GELU(2) = 1.954: three real non-zeros,
        # although only one pre-activation is positive
        (torch.nn.GELU(), 3, [True, True, False, True]),
        (torch.nn.ReLU(), 1, [False, False, False, True]),
    ],
    ids=["gelu", "relu"],
)
def test_ffn_density_counts_exact_zeros_of_the_activation_output(act, nonzero, active):
    from econ_ray.attention.runtime import EconRuntime, ObservedActivation

    rt = EconRuntime(collect=True)
    rt.token_mask = torch.tensor([[1, 0]])  # the second token is padding: not counted
    obs = ObservedActivation(act, rt, 0)
    h = torch.tensor([[[-1.0, -0.5, 0.0, 2.0], [5.0, 5.0, 5.0, 5.0]]])  # (B=1, L=2, I=4)
    out = obs(h)
    assert torch.equal(out, act(h))
    st = rt.stats[0]
    assert (st.ffn_nonzero, st.ffn_total) == (nonzero, 4)
    assert st.neuron_active.tolist() == active
