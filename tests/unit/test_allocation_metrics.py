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


def entropy_naive(w):
    total = sum(w)
    return -sum(x / total * math.log2(x / total) for x in w if x > 0)


# (2, 2, 3): four rows with different totals, the last with a masked position (weight 5, not counted)
BATCHED_W = torch.tensor([[[0.5, 0.25, 0.25], [3.0, 0.0, 0.0]], [[1.0, 1.0, 1.0], [2.0, 2.0, 5.0]]])
BATCHED_VALID = torch.tensor([[[True, True, True], [True, True, True]], [[True, True, True], [True, True, False]]])


def test_gini_of_a_batch_is_row_by_row():
    # pairs of [.5, .25, .25]: .25, .25, 0 -> double sum 1.0 / (2*3*1) = 1/6; [3, 0, 0]: 12 / (2*3*3) = 2/3;
    # [1, 1, 1] and the valid [2, 2] are uniform -> 0
    got = gini_rows(BATCHED_W, BATCHED_VALID)
    assert got.shape == (2, 2)
    assert got.flatten().tolist() == pytest.approx([1 / 6, 2 / 3, 0.0, 0.0], abs=1e-6)


def test_entropy_of_a_batch_is_row_by_row():
    # each row normalised by its own valid total: 1.5, 0, log2 3, and 1 bit for the valid [2, 2]
    got = entropy_bits_rows(BATCHED_W, BATCHED_VALID)
    assert got.shape == (2, 2)
    assert got.flatten().tolist() == pytest.approx([1.5, 0.0, math.log2(3), 1.0], abs=1e-6)
    assert got[0, 0].item() == pytest.approx(entropy_naive([0.5, 0.25, 0.25]))


def test_entropy_zero_row_is_nan():
    # a row with no open edge (all valid weights 0) or no valid position is undefined, like Gini's
    w = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    valid = torch.tensor([[True, True, True], [False, False, False]])
    got = entropy_bits_rows(w, valid)
    assert math.isnan(got[0].item()) and math.isnan(got[1].item())
    assert math.isnan(gini_rows(w, valid)[1].item())


def test_density_with_nothing_valid_is_one():
    kept = torch.tensor([[True, False]])
    assert density(kept, torch.zeros(1, 2, dtype=torch.bool)) == 1.0


def test_results_stay_on_the_input_device():
    # the meta device stands in for a GPU: every tensor made inside must follow the input's device
    w = torch.rand(2, 3, device="meta")
    valid = torch.ones(2, 3, dtype=torch.bool, device="meta")
    assert gini_rows(w, valid).device.type == "meta"
    assert entropy_bits_rows(w, valid).device.type == "meta"
