"""What a trial asks of the cluster: where its own process lives, and the DeepSpeed config its CUDA
workers would start with (checked by DeepSpeed's own config parser, on CPU: no GPU needed)."""

from __future__ import annotations

import pytest

from econ_ray.config.schema import DistributedConfig, TrainingConfig
from econ_ray.search.driver import HEAD_NODE_RESOURCE, trial_resources


def test_trial_process_is_pinned_to_the_head_node_unless_asked_not_to():
    head = trial_resources(DistributedConfig())
    assert head["CPU"] == 0 and 0 < head[HEAD_NODE_RESOURCE] < 0.01  # a sliver: thousands of trials fit
    anywhere = trial_resources(DistributedConfig(trial_driver="any"))
    assert HEAD_NODE_RESOURCE not in anywhere and anywhere["CPU"] == 0


def test_the_head_resource_is_the_one_ray_gives_the_head_node():
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME

    assert HEAD_NODE_RESOURCE == HEAD_NODE_RESOURCE_NAME


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_the_cuda_deepspeed_config_is_one_deepspeed_accepts(stage):
    from econ_ray.training.deepspeed_engine import deepspeed_config, import_deepspeed

    import_deepspeed()
    from deepspeed.runtime.config import DeepSpeedConfig

    dist = DistributedConfig(gpus_per_worker=1, zero_stage=stage, gradient_accumulation=2)
    cfg = DeepSpeedConfig(deepspeed_config(dist, TrainingConfig(batch_size=8, grad_clip=1.0), cuda=True))
    assert cfg.bfloat16_config.enabled and not cfg.float16_config.enabled  # bf16 on CUDA under "auto"
    assert cfg.zero_optimization_stage == stage and cfg.gradient_clipping == 1.0
    assert cfg.train_micro_batch_size_per_gpu == 8 and cfg.gradient_accumulation_steps == 2
    fp32 = DeepSpeedConfig(deepspeed_config(DistributedConfig(precision="fp32"), TrainingConfig(), cuda=True))
    assert not fp32.bfloat16_config.enabled
