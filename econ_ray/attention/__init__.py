"""Model surgery: econ-ray attention (dense, gates, top-k, budget) and FFN observers for HF models."""

from econ_ray.attention.runtime import EconRuntime, LayerStats, gate_parameters, install, runtime_of

__all__ = ["EconRuntime", "LayerStats", "gate_parameters", "install", "runtime_of"]
