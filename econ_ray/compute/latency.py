"""Wall-clock latency of a callable or of one batch-1 model forward pass, in seconds.

Timing uses ``time.perf_counter``. The first ``warmup`` calls are discarded (allocator, kernel
selection and cache effects); the next ``repeats`` calls are timed one by one and summarised by
their median and 10th/90th percentiles (linear interpolation, as ``numpy.percentile``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Latency:
    """Summary of ``repeats`` timed calls after ``warmup`` untimed ones; times in seconds."""

    median_s: float
    p10_s: float
    p90_s: float
    repeats: int
    warmup: int


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 10,
    repeats: int = 50,
    sync: Callable[[], None] | None = None,
) -> Latency:
    """Call ``fn()`` ``warmup + repeats`` times and summarise the last ``repeats`` durations.

    ``sync``, when given, is called before each timer start and before each timer stop, so that
    asynchronous work (CUDA kernels) queued by ``fn`` is inside the measured interval and work
    queued before it is not. Returns seconds.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    durations = np.empty(repeats, dtype=np.float64)
    for i in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        durations[i] = time.perf_counter() - start
    p10, median, p90 = np.percentile(durations, [10, 50, 90])
    return Latency(median_s=float(median), p10_s=float(p10), p90_s=float(p90), repeats=repeats, warmup=warmup)


@dataclass(frozen=True)
class Paired:
    """Two callables timed in alternation: each one's :class:`Latency` and the median over rounds of
    ``a``'s time over ``b``'s in the same round (``ratio``: ``b``'s speedup over ``a``), with its
    10th/90th percentiles. A slow drift of the machine (another job, the clock) moves both times of a
    round together, so the ratio is steadier than the ratio of two medians timed one after the other."""

    a: Latency
    b: Latency
    ratio: float
    ratio_p10: float
    ratio_p90: float


def measure_paired(
    fn_a: Callable[[], object],
    fn_b: Callable[[], object],
    *,
    warmup: int = 10,
    repeats: int = 50,
    sync: Callable[[], None] | None = None,
) -> Paired:
    """``repeats`` rounds after ``warmup`` untimed ones, each timing ``fn_a`` once and ``fn_b`` once,
    in alternating order (a b, b a, a b, ...) so that neither always runs second."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    def timed(fn: Callable[[], object]) -> float:
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        return time.perf_counter() - start

    for _ in range(warmup):
        fn_a()
        fn_b()
    da = np.empty(repeats, dtype=np.float64)
    db = np.empty(repeats, dtype=np.float64)
    for i in range(repeats):
        if i % 2 == 0:
            da[i] = timed(fn_a)
            db[i] = timed(fn_b)
        else:
            db[i] = timed(fn_b)
            da[i] = timed(fn_a)

    def summary(d: np.ndarray) -> Latency:
        p10, median, p90 = np.percentile(d, [10, 50, 90])
        return Latency(median_s=float(median), p10_s=float(p10), p90_s=float(p90), repeats=repeats, warmup=warmup)

    r10, r50, r90 = np.percentile(da / db, [10, 50, 90])
    return Paired(a=summary(da), b=summary(db), ratio=float(r50), ratio_p10=float(r10), ratio_p90=float(r90))


def _batch_one_devices(inputs: Mapping[str, torch.Tensor], what: str) -> list[torch.device]:
    if not inputs:
        raise ValueError("inputs must contain at least one tensor")
    devices = set()
    for name, tensor in inputs.items():
        if tensor.dim() == 0 or tensor.shape[0] != 1:
            raise ValueError(f"{what} expects batch size 1; input {name!r} has shape {tuple(tensor.shape)}")
        devices.add(tensor.device)
    return [dev for dev in devices if dev.type == "cuda"]


def paired_model_latency(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    *,
    warmup: int = 10,
    repeats: int = 50,
) -> Paired:
    """:func:`measure_paired` of two models' batch-1 forward passes on the same inputs, as
    :func:`model_latency` runs one (eval mode, ``torch.inference_mode``, CUDA synchronised; modes
    restored). ``ratio`` is ``model_b``'s speedup over ``model_a``."""
    cuda_devices = _batch_one_devices(inputs, "paired_model_latency")

    def sync() -> None:
        for dev in cuda_devices:
            torch.cuda.synchronize(dev)

    modes = [model_a.training, model_b.training]
    model_a.eval()
    model_b.eval()
    try:
        with torch.inference_mode():
            return measure_paired(
                lambda: model_a(**inputs),
                lambda: model_b(**inputs),
                warmup=warmup,
                repeats=repeats,
                sync=sync if cuda_devices else None,
            )
    finally:
        model_a.train(modes[0])
        model_b.train(modes[1])


def model_latency(
    model: torch.nn.Module,
    inputs: Mapping[str, torch.Tensor],
    *,
    warmup: int = 10,
    repeats: int = 50,
) -> Latency:
    """Latency of ``model(**inputs)`` at batch 1, in eval mode under ``torch.inference_mode``.

    Every tensor in ``inputs`` must have batch dimension (dim 0) equal to 1, since the project
    reports per-example latency; anything else raises ``ValueError``. When any input lives on a
    CUDA device the device is synchronised around each call. The model's train/eval mode is
    restored afterwards. Returns seconds.
    """
    cuda_devices = _batch_one_devices(inputs, "model_latency")

    def sync() -> None:
        for dev in cuda_devices:
            torch.cuda.synchronize(dev)

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return measure_latency(
                lambda: model(**inputs),
                warmup=warmup,
                repeats=repeats,
                sync=sync if cuda_devices else None,
            )
    finally:
        model.train(was_training)
