"""Circuits by attribution patching (econ_ray.experiments.circuit): the patched forward, the linear estimate
against exact patching on a tiny GPT-2, the top-k search, the task pairs and the command's errors."""

import pytest
import torch

from econ_ray.attention.runtime import install
from econ_ray.experiments import circuit as cc

L = 10


@pytest.fixture
def model(tiny_gpt2):
    install(tiny_gpt2, mode="dense")
    return tiny_gpt2.double().eval()


@pytest.fixture
def pairs():
    """Clean/corrupted inputs that differ in their first three tokens; the last four positions are scored,
    and their own tokens are the same in both, so only attention carries the difference there."""
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(1, 50, (6, L), generator=g)
    corrupt = clean.clone()
    corrupt[:, 1:4] = torch.randint(1, 50, (6, 3), generator=g)
    targets = torch.full((6, L), -100)
    targets[:, L - 5 : L - 1] = clean[:, L - 4 :]
    return cc.Pairs(clean, corrupt, targets)


def _metric(model, pairs, corrupt=None, **keep):
    with torch.no_grad():
        return float(cc.forward(model, pairs.clean, pairs.targets, corrupt=corrupt, **keep).metric)


def test_keeping_everything_is_the_clean_run_and_patching_everything_the_corrupted_one(model, pairs):
    clean = cc.forward(model, pairs.clean, pairs.targets)
    corrupt = cc.forward(model, pairs.corrupt, pairs.targets)
    assert float(clean.metric) != pytest.approx(float(corrupt.metric), abs=1e-6)
    with torch.no_grad():
        stock = model(input_ids=pairs.clean).logits  # no patch hook at all
    assert float(clean.metric) == pytest.approx(float(cc.task_metric(stock, pairs.targets)), abs=1e-10)
    n_layers, n_heads = 2, 4
    keep_all = {layer: torch.ones(n_heads, L, L, dtype=torch.bool) for layer in range(n_layers)}
    none = {layer: torch.zeros(n_heads, L, L, dtype=torch.bool) for layer in range(n_layers)}
    assert _metric(model, pairs, corrupt, keep_edges=keep_all) == pytest.approx(float(clean.metric), abs=1e-10)
    # every attention edge patched: the scored positions see only the corrupted run
    assert _metric(model, pairs, corrupt, keep_edges=none) == pytest.approx(float(corrupt.metric), abs=1e-10)
    heads_off = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    mlps_off = torch.zeros(n_layers, dtype=torch.bool)
    patched = _metric(model, pairs, corrupt, keep_heads=heads_off, keep_mlps=mlps_off)
    assert patched == pytest.approx(float(corrupt.metric), abs=1e-10)


def _mix(clean, corrupt, t, *, values=True):
    """A run whose units sit a share t of the way from the clean to the corrupted run."""

    def lerp(a, b):
        return {k: a[k] + t * (b[k] - a[k]) for k in a}

    return cc.Run(
        corrupt.metric,
        lerp(clean.weights, corrupt.weights),
        lerp(clean.values, corrupt.values) if values else clean.values,
        lerp(clean.heads, corrupt.heads),
        lerp(clean.mlps, corrupt.mlps),
    )


def test_the_linear_estimate_matches_exact_patching_for_a_small_change(model, pairs):
    """Attribution patching is exact to first order: patching a unit a share t of the way to its corrupted
    value changes the metric by t times the unit's attribution, up to O(t^2)."""
    attr, corrupt = cc.attribute(model, pairs)
    clean = cc.forward(model, pairs.clean, pairs.targets, grad=True)
    clean.metric.backward()
    t = 1e-5
    near = _mix(clean, corrupt, t)
    for layer, head in [(0, 0), (0, 3), (1, 2)]:
        keep = torch.ones(2, 4, dtype=torch.bool)
        keep[layer, head] = False
        real = (_metric(model, pairs, near, keep_heads=keep) - attr.clean) / t
        assert real == pytest.approx(float(attr.heads[layer, head]), rel=1e-3, abs=1e-7)
    for layer in (0, 1):
        keep = torch.ones(2, dtype=torch.bool)
        keep[layer] = False
        real = (_metric(model, pairs, near, keep_mlps=keep) - attr.clean) / t
        assert real == pytest.approx(float(attr.mlps[layer]), rel=1e-3, abs=1e-7)
    # one edge: only its weight moves (values stay clean), so the estimate is g_i . (a'_ij - a_ij) v_j
    near_w = _mix(clean, corrupt, t, values=False)
    for layer, head, i, j in [(0, 1, 6, 2), (1, 0, 8, 3), (1, 3, 9, 9)]:
        keep = {x: torch.ones(4, L, L, dtype=torch.bool) for x in range(2)}
        keep[layer][head, i, j] = False
        real = (_metric(model, pairs, near_w, keep_edges=keep) - attr.clean) / t
        g = clean.heads[layer].grad
        est = cc.edge_attribution(
            g, clean.weights[layer], clean.values[layer], corrupt.weights[layer], clean.values[layer]
        )[head, i, j]
        assert real == pytest.approx(float(est), rel=1e-3, abs=1e-7)


def test_a_full_swap_of_one_edge_is_estimated_from_both_its_weight_and_value(model, pairs):
    attr, corrupt = cc.attribute(model, pairs)
    clean = cc.forward(model, pairs.clean, pairs.targets, grad=True)
    clean.metric.backward()
    layer = 1
    g, a, v = clean.heads[layer].grad, clean.weights[layer], clean.values[layer]
    a2, v2 = corrupt.weights[layer], corrupt.values[layer]
    by_hand = torch.einsum("bhid,bhij,bhjd->hij", g, a2, v2) - torch.einsum("bhid,bhij,bhjd->hij", g, a, v)
    assert torch.allclose(attr.edges[layer], torch.tril(by_hand), atol=1e-12)
    assert int(attr.counted.sum()) == 2 * 4 * L * (L + 1) // 2  # dense: every causal edge counts
    assert not attr.edges[:, :, torch.triu_indices(L, L, 1)[0], torch.triu_indices(L, L, 1)[1]].any()


def test_smallest_top_k_finds_the_first_k_that_recovers_with_few_probes():
    for n in (1, 2, 7, 100, 1000):
        for need in sorted({1, 2, n // 3 or 1, n} & set(range(1, n + 1))):
            probes = []

            def recovered(k, need=need, probes=probes):
                probes.append(k)
                return 1.0 if k >= need else 0.5

            k, r = cc.smallest_top_k(n, recovered, 0.9)
            assert (k, r) == (need, 1.0)
            assert len(probes) <= 2 * max(1, n.bit_length()) + 1
    with pytest.raises(ValueError):
        cc.smallest_top_k(0, lambda k: 1.0, 0.9)


def test_find_circuit_verifies_its_circuits_by_patching(model, pairs):
    found = cc.find_circuit(model, pairs, target=0.9)
    assert found.metric_recovered >= 0.9 and found.components_recovered >= 0.9
    assert 1 <= found.edges_90 <= found.total_edges == 2 * 4 * L * (L + 1) // 2
    assert 1 <= found.components_90 <= found.total_components == 2 * 4 + 2
    assert len(found.components) == found.components_90
    assert found.estimate_vs_patching.keys() == {"pearson_components", "max_abs_error"}


def _word_tokenizer(texts):
    from econ_ray.data.tokenizer import build_word_tokenizer

    return build_word_tokenizer(texts, model_max_length=64)


def test_addition_pairs_swap_the_first_operand_and_score_the_answer():
    from econ_ray.data.builtin import addition_text

    tok = _word_tokenizer([addition_text(a, b) for a in range(100) for b in range(0, 100, 7)])
    p = cc.addition_pairs(tok, 50, seed=3)
    assert p.clean.shape == (50, 10)  # BOS + "a a + b b = s s s"
    for c, x, t in zip(p.clean.tolist(), p.corrupt.tolist(), p.targets.tolist()):
        words = tok.convert_ids_to_tokens(c)[1:]
        a, b, s = int("".join(words[0:2])), int("".join(words[3:5])), int("".join(words[6:9]))
        assert a + b == s and s >= 100
        assert c[3:] == x[3:] and c[1:3] != x[1:3]  # only the first operand changes; the answer stays clean
        assert [i for i, v in enumerate(t) if v != -100] == [6, 7, 8] and t[6:9] == c[7:10]
    assert torch.equal(p.clean, cc.addition_pairs(tok, 50, seed=3).clean)


def test_induction_pairs_repeat_a_sequence_only_in_the_clean_input():
    tok = _word_tokenizer([" ".join(f"w{i}" for i in range(80))])
    p = cc.induction_pairs(tok, 8, seed=0, half=6)
    assert p.clean.shape == (8, 13)
    for c, x, t in zip(p.clean.tolist(), p.corrupt.tolist(), p.targets.tolist()):
        assert c[1:7] == c[7:13] and x[7:13] == c[7:13] and x[1:7] != c[1:7]
        assert [i for i, v in enumerate(t) if v != -100] == list(range(7, 12)) and t[7:12] == c[8:13]
        assert not set(c) & set(tok.all_special_ids) - {tok.bos_token_id}
    with pytest.raises(ValueError, match="ordinary tokens"):
        cc.induction_pairs(_word_tokenizer(["a b c"]), 2, seed=0, half=6)


def test_circuit_command_refuses_bad_input_before_work(tmp_path, capsys):
    from econ_ray.cli.main import main

    assert main(["circuit", str(tmp_path / "none"), "--task", "addition"]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(["circuit", str(tmp_path), "--task", "addition", "--pairs", "1"]) == 2
    assert "--pairs" in capsys.readouterr().err
    assert main(["circuit", str(tmp_path), "--task", "addition", "--target", "1.5"]) == 2
    assert "--target" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["circuit", str(tmp_path), "--task", "ioi"])


def test_bracket_pairs_remove_only_the_opening_bracket_and_score_the_closing_one():
    from econ_ray.data.tokenizer import build_bpe_tokenizer

    texts = [
        f"the call f(x{i}, y) returns a list [a, b{i}] of values and (also more) words go on here" for i in range(40)
    ]
    tok = build_bpe_tokenizer(texts, vocab_size=400)
    p = cc.bracket_pairs(tok, texts, n=30, seed=0, window=8)
    n = p.clean.shape[0]
    assert p.clean.shape == (n, 8) and 2 <= n <= 30
    for c, x, t in zip(p.clean.tolist(), p.corrupt.tolist(), p.targets.tolist()):
        diff = [i for i in range(8) if c[i] != x[i]]
        assert len(diff) == 1  # one token changes: the opening one
        i = diff[0]
        opened, plain = tok.decode([c[i]]), tok.decode([x[i]])
        closing = tok.decode([t[-1]])
        kind = next(o for o, cl in cc.BRACKETS if closing.startswith(cl))
        assert opened.replace(kind, "", 1) == plain and kind not in plain
        assert t[:-1] == [-100] * 7  # only the closing token is scored
        assert not any(ch in tok.decode(c[i + 1 :]) for pair in cc.BRACKETS for ch in pair)  # nothing between
    again = cc.bracket_pairs(tok, texts, n=30, seed=0, window=8)
    assert torch.equal(p.clean, again.clean)
    with pytest.raises(ValueError, match="bracket spans"):
        cc.bracket_pairs(tok, ["no brackets at all in this text, none whatsoever here"], n=5, seed=0, window=4)
