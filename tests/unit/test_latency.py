"""Latency measurement behaviour (no assertions on actual timings)."""

from __future__ import annotations

import time

import pytest
import torch

from econ_ray.compute import Latency, measure_latency, model_latency


def test_calls_warmup_plus_repeats_and_orders_percentiles() -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        time.sleep(0.0005 * (len(calls) % 3))

    lat = measure_latency(fn, warmup=3, repeats=7)
    assert len(calls) == 10
    assert isinstance(lat, Latency)
    assert (lat.warmup, lat.repeats) == (3, 7)
    assert 0.0 <= lat.p10_s <= lat.median_s <= lat.p90_s


def test_sync_wraps_each_timed_call() -> None:
    events: list[str] = []
    measure_latency(lambda: events.append("call"), warmup=1, repeats=2, sync=lambda: events.append("sync"))
    assert events == ["call", "sync", "call", "sync", "sync", "call", "sync"]


def test_bad_counts_raise() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        measure_latency(lambda: None, warmup=-1)


class _Probe(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_inference_mode_enabled()))
        return self.lin(input_ids.float()) * attention_mask


def test_model_latency_eval_inference_mode_and_restores_training() -> None:
    model = _Probe().train()
    inputs = {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4)}
    lat = model_latency(model, inputs, warmup=2, repeats=5)
    assert len(model.seen) == 7
    assert all(seen == (False, True) for seen in model.seen)
    assert model.training
    assert lat.repeats == 5 and lat.p10_s <= lat.median_s <= lat.p90_s


def test_model_latency_rejects_batch_two() -> None:
    model = _Probe()
    inputs = {"input_ids": torch.ones(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4)}
    with pytest.raises(ValueError, match="batch size 1"):
        model_latency(model, inputs, warmup=0, repeats=1)
    assert model.seen == []
