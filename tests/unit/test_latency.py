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


def _fake_clock(monkeypatch: pytest.MonkeyPatch, readings: list[float]) -> None:
    """Make ``time.perf_counter`` return ``readings`` one by one (start, stop, start, stop, ...)."""
    it = iter(readings)
    monkeypatch.setattr(time, "perf_counter", lambda: next(it))


def test_durations_and_percentiles_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    # timed calls of 1, 2, 3, 4, 5 s (stop - start); linear interpolation over the sorted five:
    # p10 at position 0.4 -> 1.4, median -> 3.0, p90 at position 3.6 -> 4.6
    _fake_clock(monkeypatch, [0.0, 1.0, 10.0, 12.0, 20.0, 23.0, 30.0, 34.0, 40.0, 45.0])
    lat = measure_latency(lambda: None, warmup=2, repeats=5)
    assert (lat.p10_s, lat.median_s, lat.p90_s) == (pytest.approx(1.4), pytest.approx(3.0), pytest.approx(4.6))


def test_default_counts_are_ten_warmup_and_fifty_timed() -> None:
    calls: list[int] = []
    lat = measure_latency(lambda: calls.append(1))
    assert len(calls) == 60 and (lat.warmup, lat.repeats) == (10, 50)
    model = _Probe()
    lat = model_latency(model, {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4)})
    assert len(model.seen) == 60 and (lat.warmup, lat.repeats) == (10, 50)


def test_smallest_valid_counts() -> None:
    calls: list[int] = []
    lat = measure_latency(lambda: calls.append(1), warmup=0, repeats=1)
    assert len(calls) == 1 and lat.p10_s == lat.median_s == lat.p90_s >= 0.0
    with pytest.raises(ValueError, match=r"^repeats must be >= 1, got 0$"):
        measure_latency(lambda: None, repeats=0)
    with pytest.raises(ValueError, match=r"^warmup must be >= 0, got -1$"):
        measure_latency(lambda: None, warmup=-1)


def test_model_latency_input_shapes() -> None:
    model = _Probe()
    with pytest.raises(ValueError, match=r"^inputs must contain at least one tensor$"):
        model_latency(model, {}, warmup=0, repeats=1)
    with pytest.raises(ValueError, match=r"^model_latency expects batch size 1; input 'input_ids' has shape \(\)$"):
        model_latency(model, {"input_ids": torch.tensor(3)}, warmup=0, repeats=1)
    # a 1-D input of one element is batch 1 too
    seen: list[int] = []
    one_d = torch.nn.Module()
    one_d.forward = lambda x: seen.append(x.shape[0])
    model_latency(one_d, {"x": torch.ones(1)}, warmup=0, repeats=2)
    assert seen == [1, 1]


class _FakeCudaTensor:
    """Stands in for a batch-1 tensor on cuda:1 (no GPU needed): only what model_latency reads."""

    shape = (1, 4)
    device = torch.device("cuda", 1)

    def dim(self) -> int:
        return 2


def test_cuda_inputs_synchronise_their_device_around_each_timed_call(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[object] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: events.append(dev))
    model = torch.nn.Module()
    model.forward = lambda **_: events.append("call")
    model_latency(model, {"input_ids": _FakeCudaTensor()}, warmup=1, repeats=2)
    dev = torch.device("cuda", 1)
    assert events == ["call", dev, "call", dev, dev, "call", dev]


def test_model_latency_keeps_an_eval_model_in_eval() -> None:
    model = _Probe().eval()
    model_latency(
        model,
        {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4)},
        warmup=0,
        repeats=1,
    )
    assert not model.training


class _Clock:
    """A fake perf_counter: time moves only when a timed function says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_paired_alternates_and_its_ratio_survives_a_drifting_machine(monkeypatch) -> None:
    from econ_ray.compute import measure_paired

    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    order: list[str] = []
    slow = [1.0]

    def fn(name: str, cost: float):
        def run() -> None:
            order.append(name)
            clock.t += cost * slow[0]
            if name == "b":
                slow[0] *= 1.5  # the machine gets slower every round: medians drift, ratios do not

        return run

    p = measure_paired(fn("a", 3.0), fn("b", 1.0), warmup=2, repeats=6)
    assert order[:4] == ["a", "b", "a", "b"]  # warm-up: both, untimed
    assert order[4:] == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert p.a.repeats == p.b.repeats == 6
    # in an "a b" round a runs before b slows the machine; in a "b a" round after: ratios 3 and 4.5
    assert p.ratio_p10 == pytest.approx(3.0) and p.ratio_p90 == pytest.approx(4.5)
    assert p.ratio == pytest.approx(3.75)
    assert p.a.median_s / p.b.median_s != pytest.approx(p.ratio)  # two medians would mislead here
    with pytest.raises(ValueError):
        measure_paired(lambda: None, lambda: None, repeats=0)


def test_paired_model_latency_runs_both_in_eval_inference_mode() -> None:
    from econ_ray.compute import paired_model_latency

    a, b = _Probe().train(), _Probe().eval()
    inputs = {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4)}
    p = paired_model_latency(a, b, inputs, warmup=1, repeats=3)
    assert len(a.seen) == len(b.seen) == 4
    assert all(seen == (False, True) for seen in a.seen + b.seen)
    assert a.training and not b.training
    with pytest.raises(ValueError, match="batch size 1"):
        paired_model_latency(a, b, {"input_ids": torch.ones(2, 4, dtype=torch.long)})
    assert p.ratio > 0
