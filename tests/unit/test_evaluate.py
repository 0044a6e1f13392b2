"""FLOPs in a run's summary (METHOD section 6): effective is the whole cost after skipping."""

import pytest


def test_flops_fields_are_consistent(topk_run):
    s = topk_run.summary  # a top-k run (k = 2, L = 24), shared with test_training (tests/unit/conftest.py)
    assert s["dense_total_gflops"] == pytest.approx(s["dense_gflops"] + s["attention_gflops"])
    # top-2 of up to 24 positions keeps few edges, but top-k reads every score: no head is dead, the
    # Q K^T half of the attention products is paid in full and only the A V half shrinks with the density
    # (every layer has the same valid edges, so the mean of the layers' densities is the overall one)
    assert s["dead_heads"] == 0
    half = s["attention_gflops"] / 2
    assert s["effective_attention_gflops"] == pytest.approx(half + half * s["attention_density"], rel=1e-6)
    assert s["effective_attention_gflops"] > half
    assert s["effective_gflops"] < s["dense_total_gflops"]
    assert s["effective_gflops"] >= s["effective_attention_gflops"]
