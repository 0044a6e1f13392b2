"""Compute cost of a forward pass: analytic FLOPs (dense and sparsity-aware) and measured latency."""

from econ_ray.compute.flops import (
    ARCHS,
    ArchShape,
    FlopCount,
    LayerSparsity,
    UnitCosts,
    count_flops,
    dense_flops,
    effective_flops,
    expected_static_flops,
    shape_from_hf_config,
    static_flops,
    unit_costs,
)
from econ_ray.compute.latency import (
    Latency,
    Paired,
    measure_latency,
    measure_paired,
    model_latency,
    paired_model_latency,
)
from econ_ray.compute.shape import ModelDims, model_dims

__all__ = [
    "ARCHS",
    "ArchShape",
    "FlopCount",
    "LayerSparsity",
    "Latency",
    "Paired",
    "ModelDims",
    "count_flops",
    "dense_flops",
    "UnitCosts",
    "effective_flops",
    "expected_static_flops",
    "measure_latency",
    "measure_paired",
    "model_dims",
    "model_latency",
    "paired_model_latency",
    "shape_from_hf_config",
    "static_flops",
    "unit_costs",
]
