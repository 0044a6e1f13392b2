"""Gini, entropy and density against values computed by hand (METHOD section 5)."""

import math

import pytest
import torch

from econ_ray.metrics.allocation import density, entropy_bits_rows, gini_rows


def gini_naive(w):
    n = len(w)
    return sum(abs(a - b) for a in w for b in w) / (2 * n * sum(w))


def test_gini_uniform_is_zero():
    w = torch.full((1, 4), 0.25)
    assert gini_rows(w, torch.ones(1, 4, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-7)


def test_gini_one_hot_is_one_minus_one_over_n():
    # [1, 0, 0, 0]: sum|wi - wj| = 2 * 3 = 6; G = 6 / (2 * 4 * 1) = 0.75
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert gini_rows(w, torch.ones(1, 4, dtype=torch.bool)).item() == pytest.approx(0.75)


def test_gini_hand_value():
    # w = [0.1, 0.2, 0.7]: pairs |.1-.2|=.1, |.1-.7|=.6, |.2-.7|=.5 -> double sum 2.4; G = 2.4 / (2*3*1) = 0.4
    w = torch.tensor([[0.7, 0.1, 0.2]])
    assert gini_rows(w, torch.ones(1, 3, dtype=torch.bool)).item() == pytest.approx(0.4)


def test_gini_counts_valid_positions_only():
    # masked positions must not enter N: [0.5, 0.5 | masked, masked] is uniform over 2 -> 0
    w = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False, False]])
    assert gini_rows(w, valid).item() == pytest.approx(0.0, abs=1e-7)
    # the same row with all four valid is unequal: G = (4 * 0.5 * 2... ) by the naive formula
    assert gini_rows(w, torch.ones(1, 4, dtype=torch.bool)).item() == pytest.approx(gini_naive([0.5, 0.5, 0, 0]))


def test_gini_matches_naive_on_random_rows():
    torch.manual_seed(0)
    w = torch.rand(5, 7)
    valid = torch.rand(5, 7) > 0.3
    valid[:, 0] = True
    got = gini_rows(w, valid)
    for r in range(5):
        vals = [float(x) for x, v in zip(w[r], valid[r]) if v]
        assert got[r].item() == pytest.approx(gini_naive(vals), rel=1e-5)


def test_gini_zero_row_is_nan():
    assert math.isnan(gini_rows(torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool)).item())


def test_entropy_bits_hand_values():
    ones = torch.ones(1, 4, dtype=torch.bool)
    assert entropy_bits_rows(torch.full((1, 4), 0.25), ones).item() == pytest.approx(2.0)
    assert entropy_bits_rows(torch.tensor([[1.0, 0, 0, 0]]), ones).item() == pytest.approx(0.0)
    # [0.5, 0.25, 0.25] -> 0.5*1 + 2*0.25*2 = 1.5 bits
    assert entropy_bits_rows(
        torch.tensor([[0.5, 0.25, 0.25]]), torch.ones(1, 3, dtype=torch.bool)
    ).item() == pytest.approx(1.5)


def test_entropy_renormalises_and_ignores_masked():
    # gated rows do not sum to one; [0.2, 0.2, (masked 0.6)] is uniform over two -> 1 bit
    w = torch.tensor([[0.2, 0.2, 0.6]])
    valid = torch.tensor([[True, True, False]])
    assert entropy_bits_rows(w, valid).item() == pytest.approx(1.0)


def test_density():
    kept = torch.tensor([[True, False, True, False]])
    valid = torch.tensor([[True, True, True, False]])
    assert density(kept, valid) == pytest.approx(2 / 3)
