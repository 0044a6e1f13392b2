import pytest


@pytest.fixture(scope="session")
def topk_run():
    """One tiny run in top-k attention (k = 2), trained once for the tests that read its summary
    (test_training: no retraining, fewer FLOPs; test_evaluate: the FLOPs fields agree). Top-k
    training is the slowest tiny mode; its summary's density and FLOPs do not depend on how long it
    trained, so 20 + 20 steps."""
    from econ_ray.training import train_run
    from tests.unit.test_training import tiny_cfg

    cfg = tiny_cfg(attention={"mode": "topk", "k": 2}, kind="penalised", lam=0.0)
    cfg.objective.dense_steps, cfg.training.max_steps, cfg.training.eval_every = 20, 20, 20
    return train_run(cfg)
