"""Task metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from econ_ray.metrics.task import (
    METRICS,
    accuracy,
    compute_task_metrics,
    higher_is_better,
    matthews_corrcoef,
    pearson,
    perplexity,
    spearman,
)


def test_accuracy() -> None:
    assert accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    assert accuracy(torch.tensor([3, 3]), np.array([3, 3])) == 1.0


def test_mismatched_or_empty_inputs_raise() -> None:
    with pytest.raises(ValueError, match="differ"):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="empty"):
        pearson([], [])


def test_pearson_known_pair() -> None:
    # dx = (-1, 0, 1), dy = (-1, 1, 0): cov 1, var 2 and 2 -> r = 1/2.
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert pearson([1, 2, 3], [-2, -4, -6]) == pytest.approx(-1.0)


def test_spearman_with_ties() -> None:
    # ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4); centred (-1.5, 0, 0, 1.5), (-1.5, .5, -.5, 1.5):
    # cov 4.5, var 4.5 and 5 -> r = 4.5 / sqrt(22.5) = 3 / sqrt(10).
    assert spearman([1.0, 2.0, 2.0, 3.0], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))


def test_spearman_is_rank_based() -> None:
    assert spearman([1, 2, 3, 4], [1, 8, 27, 1000]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [1, 8, 27, 1000]) < 0.9


def test_constant_input_gives_zero_correlation() -> None:
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0
    assert spearman([1, 2, 3], [5, 5, 5]) == 0.0


def test_mcc_binary_hand() -> None:
    # TP=3, FN=2, FP=1, TN=4: (3*4 - 1*2) / sqrt((3+1)(3+2)(4+1)(4+2)) = 10 / sqrt(600).
    labels = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    preds = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert matthews_corrcoef(preds, labels) == pytest.approx(10 / math.sqrt(600))


def test_mcc_multiclass_hand() -> None:
    # Confusion (rows true, cols pred): [[1,1,0],[0,2,0],[1,0,1]]; c = 4, s = 6,
    # t = (2,2,2), p = (2,3,1): sum p t = 12; numerator 4*6 - 12 = 12;
    # s^2 - sum p^2 = 36 - 14 = 22; s^2 - sum t^2 = 36 - 12 = 24; MCC = 12 / sqrt(528).
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    assert matthews_corrcoef(preds, labels) == pytest.approx(12 / math.sqrt(528))


def test_mcc_equals_binary_formula() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.7, y, 1 - y)
    tp = np.sum((p == 1) & (y == 1))
    tn = np.sum((p == 0) & (y == 0))
    fp = np.sum((p == 1) & (y == 0))
    fn = np.sum((p == 0) & (y == 1))
    binary = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_corrcoef(p, y) == pytest.approx(binary)


def test_mcc_degenerate_is_zero() -> None:
    assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
    assert matthews_corrcoef([0, 1], [1, 1]) == 0.0
    assert matthews_corrcoef([0, 1, 2], [0, 1, 2]) == pytest.approx(1.0)


def test_perplexity() -> None:
    assert perplexity(math.log(4)) == pytest.approx(4.0)
    assert perplexity(0.0) == 1.0


def test_compute_classification_from_logits() -> None:
    logits = torch.tensor([[2.0, 0.1], [0.0, 1.0], [0.3, 0.2], [0.1, 0.9]], requires_grad=True)
    out = compute_task_metrics("classification", logits=logits, labels=[0, 1, 1, 1])
    # preds (0, 1, 0, 1): TP=2, FN=1, FP=0, TN=1 -> (2*1 - 0) / sqrt(2*3*1*2) = 2 / sqrt(12).
    assert set(out) == {"accuracy", "mcc"}
    assert out["accuracy"] == 0.75
    assert out["mcc"] == pytest.approx(2 / math.sqrt(12))


def test_compute_regression_and_lm() -> None:
    out = compute_task_metrics("regression", logits=np.array([[1.0], [2.0], [3.0]]), labels=[1, 3, 2])
    assert out == pytest.approx({"pearson": 0.5, "spearman": 0.5})
    assert compute_task_metrics("lm", mean_ce=math.log(4)) == pytest.approx({"perplexity": 4.0})


def test_compute_rejects_bad_calls() -> None:
    with pytest.raises(ValueError, match="unknown task kind"):
        compute_task_metrics("ranking", preds=[1], labels=[1])
    with pytest.raises(ValueError, match="exactly one"):
        compute_task_metrics("classification", labels=[1])
    with pytest.raises(ValueError, match="mean_ce"):
        compute_task_metrics("lm")


def test_metric_registry_and_direction() -> None:
    assert set(METRICS) == {"accuracy", "mcc", "pearson", "spearman", "perplexity"}
    assert not higher_is_better("perplexity")
    assert all(higher_is_better(m) for m in ("accuracy", "mcc", "pearson", "spearman"))
    with pytest.raises(KeyError):
        higher_is_better("bleu")


def test_error_messages_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"^metrics of an empty set are undefined$"):
        accuracy([], [])
    with pytest.raises(ValueError, match=r"^kind 'lm' needs mean_ce \(mean cross-entropy in nats per token\)$"):
        compute_task_metrics("lm")
    with pytest.raises(ValueError, match=r"^kind 'classification' needs labels$"):
        compute_task_metrics("classification", preds=[1])
    with pytest.raises(
        KeyError, match=r"unknown metric 'bleu'; known: \['accuracy', 'mcc', 'pearson', 'perplexity', 'spearman'\]"
    ):
        higher_is_better("bleu")


def test_inputs_of_any_shape_are_flattened() -> None:
    # (2, 1) predictions against (2,) labels, and the other way round, are the same two positions
    assert accuracy(np.array([[1], [0]]), [1, 0]) == 1.0
    assert accuracy([1, 0], np.array([[1], [1]])) == 0.5


def test_pearson_is_clipped_to_one_after_rounding() -> None:
    # y = 0.1 x + 0.1 on two points: the raw ratio rounds to 1 + 2.2e-16 (and -1 - 2.2e-16 for the mirror)
    x = [0.1, 0.3]
    assert pearson(x, [0.1 * v + 0.1 for v in x]) == 1.0
    assert pearson(x, [-0.1 * v + 0.1 for v in x]) == -1.0


def test_pearson_centres_float32_inputs_in_float64() -> None:
    # 1e7 + (0, 1, 2, 3) is exact in float32, but its float32 mean is 1e7 + 1 (not 1e7 + 1.5):
    # centring with it would give r = 0.913 for this perfect line
    far = np.array([1e7, 1e7 + 1, 1e7 + 2, 1e7 + 3], dtype=np.float32)
    near = np.arange(4, dtype=np.float32)
    assert pearson(far, near) == pytest.approx(1.0, abs=1e-12)
    assert pearson(near, far) == pytest.approx(1.0, abs=1e-12)


def test_average_ranks_are_one_based_means_of_tied_ranks() -> None:
    from econ_ray.metrics.task import _average_ranks

    # sorted 10, 20, 20, 30, 30, 30 -> ranks 1, 2.5, 2.5, 5, 5, 5
    got = _average_ranks(np.array([30, 20, 10, 30, 20, 30]))
    assert got.tolist() == [5.0, 2.5, 1.0, 5.0, 2.5, 5.0]


def test_compute_classification_from_preds_and_from_logits_over_the_last_axis() -> None:
    out = compute_task_metrics("classification", preds=torch.tensor([0, 1, 0, 1]), labels=[0, 1, 1, 1])
    assert out == pytest.approx({"accuracy": 0.75, "mcc": 2 / math.sqrt(12)})
    # (N, T, C) = (2, 3, 2) logits: argmax over the last axis gives (N, T) = [[1, 0, 1], [0, 0, 1]]
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], [[2.0, 0.5], [0.3, 0.1], [0.0, 1.0]]])
    out = compute_task_metrics("classification", logits=logits, labels=[[1, 0, 1], [1, 0, 0]])
    # TP=2, FN=1, FP=1, TN=2 -> (2*2 - 1*1) / sqrt(3 * 3 * 3 * 3) = 1/3
    assert out == pytest.approx({"accuracy": 4 / 6, "mcc": 1 / 3})


def test_compute_regression_shapes() -> None:
    assert compute_task_metrics("regression", preds=[1.0, 2.0, 3.0], labels=[1, 3, 2]) == pytest.approx(
        {"pearson": 0.5, "spearman": 0.5}
    )
    # one example: a constant input, so both correlations are 0.0
    assert compute_task_metrics("regression", preds=[0.7], labels=[1.0]) == {"pearson": 0.0, "spearman": 0.0}
    # two outputs per example are not a regression prediction
    with pytest.raises(ValueError, match="differ in size"):
        compute_task_metrics("regression", logits=np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]), labels=[1, 3, 2])
