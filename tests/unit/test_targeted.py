"""The targeted objective: hard-concrete masks, the closed-form expected static FLOPs (checked against
compute/flops.py), the schedule, the cut that meets the target, and a tiny run end to end."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from econ_ray.compute import (
    ARCHS,
    ArchShape,
    LayerSparsity,
    dense_flops,
    effective_flops,
    expected_static_flops,
    static_flops,
    unit_costs,
)
from econ_ray.config import ConfigError, parse_config
from econ_ray.objectives import hard_concrete as hc
from econ_ray.objectives.targeted import cut_step, scheduled_target
from econ_ray.training import train_run
from tests.unit.test_training import tiny_cfg

SHAPES = {
    "bert-base": ARCHS["bert-base"],
    "gpt2": ARCHS["gpt2"],
    "tiny-cls": ArchShape(3, 32, 4, 48, 100, causal=False, pooler=True, n_labels=3, lm_head=False),
}


def _effective_of_kept(shape, seq_len, heads, neurons):
    """The same structure through effective_flops' per-layer formula (the project's one counting)."""
    layers = [
        LayerSparsity(
            attention_density=h / shape.n_heads,
            dead_heads=shape.n_heads - h,
            ffn_density=n / shape.intermediate,
            dead_neurons=shape.intermediate - n,
        )
        for h, n in zip(heads, neurons)
    ]
    return effective_flops(shape, seq_len, layers).total


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_static_flops_on_deterministic_masks_equals_the_flops_module(name, seed):
    """0/1 keep probabilities: the closed form must equal static_flops and effective_flops of the same
    kept counts; any drift of the formula (a unit's cost, the fixed part) turns this red."""
    shape, seq_len = SHAPES[name], 37
    g = torch.Generator().manual_seed(seed)
    heads = (torch.rand(shape.n_layers, shape.n_heads, generator=g) < 0.6).double()
    neurons = (torch.rand(shape.n_layers, shape.intermediate, generator=g) < 0.4).double()
    attn = (torch.rand(shape.n_layers, generator=g) < 0.8).double()
    ffn = (torch.rand(shape.n_layers, generator=g) < 0.8).double()
    kept_h = [int(x) for x in (heads.sum(1) * attn)]
    kept_n = [int(x) for x in (neurons.sum(1) * ffn)]
    expected = float(expected_static_flops(shape, seq_len, heads, neurons, attn, ffn))
    assert expected == pytest.approx(static_flops(shape, seq_len, kept_h, kept_n).total, rel=1e-12)
    assert expected == pytest.approx(_effective_of_kept(shape, seq_len, kept_h, kept_n), rel=1e-12)


def test_all_kept_is_dense_and_nothing_kept_is_the_fixed_part():
    shape, L = SHAPES["tiny-cls"], 16
    ones_h, ones_n = torch.ones(shape.n_layers, shape.n_heads), torch.ones(shape.n_layers, shape.intermediate)
    assert float(expected_static_flops(shape, L, ones_h, ones_n)) == pytest.approx(dense_flops(shape, L).total)
    zero = float(expected_static_flops(shape, L, ones_h * 0, ones_n * 0))
    assert zero == pytest.approx(unit_costs(shape, L).fixed) and zero > 0


def test_expected_static_flops_is_the_exact_expectation_of_independent_masks():
    """Enumerate every 0/1 outcome of a 1-layer, 2-head, 2-neuron model with its two sublayer gates."""
    shape, L = ArchShape(1, 8, 2, 2, 10, causal=False, pooler=False, n_labels=None, lm_head=False), 5
    p_h, p_n = torch.tensor([[0.3, 0.8]], dtype=torch.float64), torch.tensor([[0.6, 0.1]], dtype=torch.float64)
    p_a, p_f = torch.tensor([0.7], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)
    probs = [*p_h.flatten(), *p_n.flatten(), *p_a, *p_f]
    total = 0.0
    for bits in itertools.product([0, 1], repeat=6):
        w = math.prod(float(p) if b else 1 - float(p) for p, b in zip(probs, bits))
        h = (bits[0] + bits[1]) * bits[4]
        n = (bits[2] + bits[3]) * bits[5]
        total += w * static_flops(shape, L, [h], [n]).total
    assert float(expected_static_flops(shape, L, p_h, p_n, p_a, p_f)) == pytest.approx(total, rel=1e-9)


def test_expected_flops_fall_when_a_log_alpha_falls():
    masks = hc.StructuredMasks(2, 4, 8, init_keep=0.9, device=torch.device("cpu"))
    shape = ArchShape(2, 16, 4, 8, 10, causal=False, pooler=True, n_labels=2, lm_head=False)
    h, n, a, f = masks.keep_probabilities()
    expected_static_flops(shape, 12, h, n, a, f).backward()
    for p in masks.parameters():
        assert p.grad is not None and bool((p.grad > 0).all())


def test_hard_concrete_keep_probability_matches_samples_and_the_initial_keep():
    la = torch.full((200_000,), hc.log_alpha_for(0.7))
    torch.manual_seed(0)
    z = hc.sample(la)
    assert float(hc.keep_probability(la[:1])) == pytest.approx(0.7, abs=1e-6)
    assert float((z > 0).double().mean()) == pytest.approx(0.7, abs=0.005)
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0  # exact zeros and ones happen
    assert float(hc.deterministic(torch.tensor(hc.log_alpha_for(0.99)))) == 1.0
    assert float(hc.deterministic(torch.tensor(-5.0))) == 0.0
    with pytest.raises(ValueError, match="keep probability"):
        hc.log_alpha_for(1.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=6, max_size=6),
    st.lists(st.floats(0, 1), min_size=10, max_size=10),
    st.floats(0.0, 40.0),
)
def test_the_cut_fits_the_budget_and_leaves_less_than_one_affordable_unit(hs, ns, budget):
    head_cost, neuron_cost = 7.0, 1.0
    cut = hc.cut_to_budget(
        torch.tensor(hs).view(2, 3),
        torch.tensor(ns).view(2, 5),
        head_cost=head_cost,
        neuron_cost=neuron_cost,
        budget=budget,
    )
    spent = head_cost * sum(cut.heads_kept) + neuron_cost * sum(cut.neurons_kept)
    assert spent <= budget + 1e-9
    left_out = (~cut.neurons).any() or (~cut.heads).any()
    if (~cut.neurons).any():
        assert budget - spent < neuron_cost  # the greedy pass would have taken one more neuron
    elif left_out:
        assert budget - spent < head_cost


def test_the_cut_keeps_the_highest_scores_first():
    cut = hc.cut_to_budget(
        torch.tensor([[0.9, 0.1]]), torch.tensor([[0.5, 0.95, 0.2]]), head_cost=4.0, neuron_cost=1.0, budget=6.0
    )
    assert cut.heads.tolist() == [[True, False]] and cut.neurons.tolist() == [[True, True, False]]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=6, max_size=6),
    st.lists(st.floats(0, 1), min_size=10, max_size=10),
    st.lists(st.booleans(), min_size=10, max_size=10),
    st.floats(0.0, 40.0),
)
def test_neurons_that_never_fire_give_their_budget_to_the_next_units(hs, ns, dead, budget):
    """The cut without the unused neurons spends the budget as a cut of the used units alone would:
    every unused neuron out, the spend within one unit of the budget unless every used unit fits."""
    head_cost, neuron_cost = 7.0, 1.0
    h, n, never = torch.tensor(hs).view(2, 3), torch.tensor(ns).view(2, 5), torch.tensor(dead).view(2, 5)
    probes: list[hc.Cut] = []

    def unused(cut: hc.Cut) -> torch.Tensor:
        probes.append(cut)
        return never & cut.neurons  # a neuron that is not kept reads zero too: only kept ones count

    # enough refills to find them all (each finds at least one more)
    cut = hc.cut_skipping_unused(
        h, n, head_cost=head_cost, neuron_cost=neuron_cost, budget=budget, unused=unused, rounds=10
    )
    assert not (cut.neurons & never).any()
    spent = head_cost * sum(cut.heads_kept) + neuron_cost * sum(cut.neurons_kept)
    assert spent <= budget + 1e-9
    if (~cut.neurons & ~never).any():
        assert budget - spent < neuron_cost
    elif (~cut.heads).any():
        assert budget - spent < head_cost
    # the same as cutting with the unused neurons ranked last and then taken out
    ref = hc.cut_to_budget(h, n.masked_fill(never, -2.0), head_cost=head_cost, neuron_cost=neuron_cost, budget=budget)
    assert torch.equal(cut.heads, ref.heads) and torch.equal(cut.neurons, ref.neurons & ~never)
    # with one refill allowed: at most three probes (cut, refill, last look), no unused neuron kept
    probes.clear()
    short = hc.cut_skipping_unused(
        h, n, head_cost=head_cost, neuron_cost=neuron_cost, budget=budget, unused=unused, rounds=1
    )
    assert len(probes) <= 3 and not (short.neurons & never).any()
    # without unused neurons it is the plain cut
    plain = hc.cut_to_budget(h, n, head_cost=head_cost, neuron_cost=neuron_cost, budget=budget)
    same = hc.cut_skipping_unused(
        h, n, head_cost=head_cost, neuron_cost=neuron_cost, budget=budget, unused=lambda c: torch.zeros_like(c.neurons)
    )
    assert torch.equal(same.heads, plain.heads) and torch.equal(same.neurons, plain.neurons)


def test_the_target_is_warmed_up_from_dense_and_the_cut_leaves_the_finetune_steps():
    assert scheduled_target(0, 100, 0.4, 0.5) == 1.0
    assert scheduled_target(25, 100, 0.4, 0.5) == pytest.approx(0.7)
    assert scheduled_target(50, 100, 0.4, 0.5) == 0.4 and scheduled_target(99, 100, 0.4, 0.5) == 0.4
    assert scheduled_target(1, 100, 0.4, 0.0) == 0.4
    assert cut_step(100, 0.2) == 80 and cut_step(10, 0.0) == 10


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ({"kind": "targeted"}, "needs target_ratio"),
        ({"kind": "targeted", "target_ratio": 0.5, "target_gflops": 1.0}, "not both"),
        ({"kind": "targeted", "target_ratio": 1.5}, "target_ratio"),
        ({"kind": "targeted", "target_ratio": 0.5, "target_warmup": 0.9, "finetune_fraction": 0.2}, "before the cut"),
    ],
)
def test_bad_targets_are_config_errors(objective, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"objective": objective}, "t.yaml")


def test_a_searched_target_range_must_lie_in_zero_one():
    with pytest.raises(ConfigError, match="target_ratio"):
        parse_config({"search": {"space": {"target_ratio": {"low": 0.2, "high": 1.3}}}}, "t.yaml")


@pytest.fixture(scope="module")
def targeted_run():
    cfg = tiny_cfg(kind="targeted", target_ratio=0.45)
    cfg.training.max_steps, cfg.training.eval_every = 80, 40
    return train_run(cfg)


def test_a_targeted_run_is_cut_to_its_target(targeted_run):
    s = targeted_run.summary
    assert s["method"] == "targeted" and s["objective"] == "targeted"
    assert s["target_gflops"] == pytest.approx(0.45 * s["dense_total_gflops"])
    assert s["static_gflops"] <= s["target_gflops"] * (1 + 1e-9)
    assert s["static_gflops"] >= 0.98 * s["target_gflops"]  # a kept unit never used would show here
    assert s["cut_gflops"] >= s["target_gflops"] - s["dense_total_gflops"] / 64  # within about one unit
    assert s["cut_gflops"] == pytest.approx(s["static_gflops"])
    assert s["effective_gflops"] <= s["static_gflops"] + 1e-12
    assert math.isfinite(s["metric"])
    rt = targeted_run.prepared.runtime
    # the cut is fixed 0/1 masks in the runtime
    values = torch.cat([m.flatten() for m in [*rt.head_masks.values(), *rt.neuron_masks.values()]])
    assert set(values.unique().tolist()) <= {0.0, 1.0} and (values == 0).any()
    # the history shows the warmed-up target reaching its final value before the cut
    targets = [r["target"] for r in targeted_run.history if "target" in r]
    assert targets and targets[-1] == pytest.approx(0.45)


def test_a_saved_targeted_model_keeps_its_cut(targeted_run, tmp_path):
    from econ_ray.modeling import load_model, save_model
    from econ_ray.training.evaluate import evaluate

    p = targeted_run.prepared
    folder = save_model(tmp_path / "m", p.model, p.tokenizer, task=p.task, config=p.cfg.model_dump())
    model, _, _ = load_model(folder)
    rt = model.econ_runtime
    ev = evaluate(model, rt, p.validation, p.task, batch_size=64, seq_len=p.cfg.data.max_length)
    assert ev["static_gflops"] == pytest.approx(targeted_run.summary["static_gflops"])
    assert ev["metric"] == pytest.approx(targeted_run.summary["metric"], abs=1e-6)


def test_a_target_below_what_no_mask_removes_fails_with_the_field():
    cfg = tiny_cfg(kind="targeted", target_gflops=1e-9)
    cfg.training.max_steps = 2
    with pytest.raises(ValueError, match="target_ratio/target_gflops"):
        train_run(cfg)


# ---- the pruning baseline (objective prune) -------------------------------------------------------


def test_the_baselines_cut_removes_the_lowest_scores_and_meets_the_target():
    from econ_ray.objectives.prune import plan_cut, remove_lowest_per_layer

    shape, L = ArchShape(2, 16, 4, 10, 50, causal=False, pooler=True, n_labels=2, lm_head=False), 8
    heads = torch.tensor([[0.9, 0.1, 0.5, 0.7], [0.2, 0.8, 0.6, 0.3]])
    neurons = [torch.arange(10.0), torch.arange(10.0).flip(0)]
    dense = dense_flops(shape, L).total
    for method in ("activation", "heads", "both"):
        for ratio in (0.95, 0.85, 0.6):
            cut = plan_cut(method, shape, L, ratio * dense, heads, neurons)
            static = static_flops(shape, L, cut.heads_kept, cut.neurons_kept).total
            c = unit_costs(shape, L)
            if method != "activation" or ratio >= 0.85:  # neurons alone reach 0.802 of this shape
                assert static <= ratio * dense + 1e-6, (method, ratio)
                assert static > ratio * dense - (c.head if method == "heads" else c.neuron) - 1e-6, (method, ratio)
            if method == "activation":
                assert bool(cut.heads.all())
            if method == "heads":
                assert bool(cut.neurons.all())
    # the lowest first: heads 0.1 and 0.2 go before the others
    cut = plan_cut("heads", shape, L, dense - 2 * unit_costs(shape, L).head, heads, neurons)
    assert (~cut.heads).nonzero().tolist() == [[0, 1], [1, 0]]
    keep = remove_lowest_per_layer(neurons, 3)  # 2 in layer 0 (remainder), 1 in layer 1
    assert (~keep[0]).nonzero().flatten().tolist() == [0, 1] and (~keep[1]).nonzero().flatten().tolist() == [9]


@pytest.mark.parametrize("method", ["activation", "heads", "both"])
def test_a_prune_trial_cuts_the_dense_model_then_fine_tunes(method):
    cfg = tiny_cfg({"mode": "dense"}, kind="prune", target_ratio=0.6, prune_method=method)
    cfg.training.max_steps = 20
    result = train_run(cfg)
    s = result.summary
    assert s["method"] == f"prune-{method}" and s["objective"] == "prune"
    assert s["static_gflops"] <= s["target_gflops"] * (1 + 1e-9)
    assert s["cut_gflops"] == pytest.approx(s["static_gflops"])
    assert s["steps"] == 20 and math.isfinite(s["metric"])


def test_a_search_over_methods_needs_a_target():
    with pytest.raises(ConfigError, match="needs a target"):
        parse_config(
            {"search": {"space": {"objective": ["targeted", "prune"], "lam": {"low": 0.1, "high": 1}}}}, "t.yaml"
        )
    cfg = parse_config(
        {
            "search": {
                "space": {
                    "objective": ["targeted", "prune"],
                    "prune_method": ["heads", "both"],
                    "target_ratio": {"low": 0.3, "high": 0.9},
                }
            }
        },
        "t.yaml",
    )
    from econ_ray.search.space import distributions, trial_config

    assert set(distributions(cfg.search.space)) == {"objective", "prune_method", "target_ratio"}
    run = trial_config(cfg, {"objective": "prune", "prune_method": "heads", "target_ratio": 0.5})
    assert (run.objective.kind, run.objective.prune_method, run.objective.target_ratio) == ("prune", "heads", 0.5)


# ---- the search's cost -----------------------------------------------------------------------------


def test_the_search_cost_picks_the_report_key_and_the_registry_budget():
    from econ_ray.search.pareto import pareto_front
    from econ_ray.search.records import TrialRecord, cost_key, points_from
    from econ_ray.tracking.registry import budget_gflops

    assert [cost_key(c) for c in ("static", "effective", "latency")] == [
        "static_gflops",
        "effective_gflops",
        "latency_ms",
    ]
    with pytest.raises(ValueError, match="search.cost"):
        cost_key("flops")
    # a is cheaper in effective FLOPs, b in static FLOPs: each cost has its own front
    recs = [
        TrialRecord("a", 0, "complete", {}, {"metric": 0.9, "static_gflops": 2.0, "effective_gflops": 0.5}),
        TrialRecord("b", 1, "complete", {}, {"metric": 0.9, "static_gflops": 1.0, "effective_gflops": 0.9}),
    ]
    assert [p.trial_id for p in pareto_front(points_from(recs, "static_gflops"))] == ["b"]
    assert [p.trial_id for p in pareto_front(points_from(recs, "effective_gflops"))] == ["a"]
    assert budget_gflops({"cost_key": "static_gflops", "static_gflops": 1.0, "effective_gflops": 0.5}) == 1.0
    assert budget_gflops({"effective_gflops": 0.5}) == 0.5  # versions registered before the cost tag


def test_latency_is_not_a_moasha_cost():
    with pytest.raises(ConfigError, match="latency"):
        parse_config(
            {"search": {"cost": "latency", "scheduler": {"kind": "moasha"}, "space": {"lam": {"low": 0.1, "high": 1}}}},
            "t.yaml",
        )


def test_pruned_latency_times_the_physically_pruned_model(targeted_run):
    from econ_ray.surgery.physical import pruned_latency

    p = targeted_run.prepared
    threads = torch.get_num_threads()
    lat = pruned_latency(p.model, p.runtime, seq_len=p.cfg.data.max_length, threads=1, repeats=3, warmup=1)
    assert lat["latency_ms"] > 0 and lat["latency_p10_ms"] <= lat["latency_p90_ms"] and lat["latency_threads"] == 1
    assert torch.get_num_threads() == threads  # restored
