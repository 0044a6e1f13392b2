"""Effective FLOPs: dense minus what the sparsity makes skippable (METHOD section 6)."""

import pytest

from econ_ray.compute import FlopCount
from econ_ray.training.evaluate import effective_gflops


def test_effective_subtracts_skipped_weight_and_edge_work():
    dense = FlopCount(linear=10e9, attention=2e9)
    eff = FlopCount(linear=8e9, attention=0.5e9)  # 2 G of weight work and 1.5 G of edge work skipped
    assert effective_gflops(dense, eff) == pytest.approx(6.5)


def test_dense_model_costs_its_dense_count():
    dense = FlopCount(linear=10e9, attention=2e9)
    assert effective_gflops(dense, dense) == pytest.approx(10.0)


def test_never_negative():
    assert effective_gflops(FlopCount(linear=1e9, attention=5e9), FlopCount(linear=1e9, attention=0.0)) == 0.0
