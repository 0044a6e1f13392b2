"""FLOPs in a run's summary (METHOD section 6): effective is the whole cost after skipping."""

import pytest


def test_flops_fields_are_consistent(topk_run):
    s = topk_run.summary  # a top-k run (k = 2, L = 24), shared with test_training (tests/unit/conftest.py)
    assert s["dense_total_gflops"] == pytest.approx(s["dense_gflops"] + s["attention_gflops"])
    # top-2 of up to 24 positions keeps few edges: the attention part shrinks, the weight layers do not
    assert s["effective_attention_gflops"] == pytest.approx(s["attention_gflops"] * s["attention_density"], rel=0.05)
    assert s["effective_gflops"] < s["dense_total_gflops"]
    assert s["effective_gflops"] >= s["effective_attention_gflops"]
