"""Typed configuration: the single source of truth, parsed from YAML in ``search_spaces/``."""

from econ_ray.config.load import ConfigError, load_config, parse_config, parse_override, read_yaml, set_dotted
from econ_ray.config.schema import (
    AttentionConfig,
    DataConfig,
    DistributedConfig,
    ModelConfig,
    ObjectiveConfig,
    Range,
    RunConfig,
    SearchConfig,
    SearchSpace,
    SearchSpaceFile,
    TrainingConfig,
)

__all__ = [
    "AttentionConfig",
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "Range",
    "RunConfig",
    "SearchConfig",
    "SearchSpace",
    "SearchSpaceFile",
    "TrainingConfig",
    "load_config",
    "parse_config",
    "parse_override",
    "read_yaml",
    "set_dotted",
]
