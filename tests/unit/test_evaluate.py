"""FLOPs in a run's summary (METHOD section 6): effective is the whole cost after skipping."""

import pytest

from econ_ray.training import train_run
from tests.unit.test_training import tiny_cfg


def test_flops_fields_are_consistent():
    cfg = tiny_cfg(attention={"mode": "topk", "k": 2}, kind="penalised", lam=0.0)
    s = train_run(cfg).summary
    assert s["dense_total_gflops"] == pytest.approx(s["dense_gflops"] + s["attention_gflops"])
    # top-2 of up to 24 positions keeps few edges: the attention part shrinks, the weight layers do not
    assert s["effective_attention_gflops"] == pytest.approx(s["attention_gflops"] * s["attention_density"], rel=0.05)
    assert s["effective_gflops"] < s["dense_total_gflops"]
    assert s["effective_gflops"] >= s["effective_attention_gflops"]
