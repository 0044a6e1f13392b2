"""Distillation from the dense reference model: the two terms' math, the frozen teacher, and every
objective training with it on a tiny model."""

import math

import pytest
import torch

from econ_ray.training import train_run
from econ_ray.training.distill import hidden_loss, logit_loss
from tests.unit.test_training import tiny_cfg


def test_the_logit_term_is_zero_for_equal_logits_and_the_scaled_kl_otherwise():
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    assert float(logit_loss(t, t, kind="classification", temperature=2.0, token_mask=None)) == pytest.approx(
        0.0, abs=1e-7
    )
    p_t, p_s = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(-1).mean() * 4
    assert float(logit_loss(s, t, kind="classification", temperature=2.0, token_mask=None)) == pytest.approx(
        float(kl), rel=1e-5
    )
    assert float(logit_loss(s[:, :1], t[:, :1], kind="regression", temperature=2.0, token_mask=None)) == pytest.approx(
        float(((s[:, 0] - t[:, 0]) ** 2).mean()), rel=1e-6
    )


def test_the_lm_term_reads_only_real_tokens_and_shifts_like_the_lm_loss():
    torch.manual_seed(1)
    s, t = torch.randn(2, 4, 7), torch.randn(2, 4, 7)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    got = logit_loss(s, t, kind="lm", temperature=1.0, token_mask=mask)
    # predictions at positions 0..2 target tokens 1..3; only targets that are real tokens count
    rows = [(0, 0), (0, 1), (1, 0)]
    ref = torch.stack(
        [
            (torch.softmax(t[b, i], -1) * (torch.log_softmax(t[b, i], -1) - torch.log_softmax(s[b, i], -1))).sum()
            for b, i in rows
        ]
    ).mean()
    assert float(got) == pytest.approx(float(ref), rel=1e-5)
    t2 = t.clone()
    t2[0, 2] += 5.0  # predicts a padding token: ignored
    assert float(logit_loss(s, t2, kind="lm", temperature=1.0, token_mask=mask)) == pytest.approx(float(got), rel=1e-6)


def test_the_hidden_term_skips_the_embeddings_and_padding():
    h = tuple(torch.randn(1, 3, 4) for _ in range(3))
    moved = (h[0] + 9.0, h[1], h[2].clone())
    assert float(hidden_loss(moved, h, None)) == 0.0  # the embedding output is not matched
    moved[2][0, 2] += 1.0  # a padding position
    assert float(hidden_loss(moved, h, torch.tensor([[1, 1, 0]]))) == 0.0
    assert float(hidden_loss(moved, h, None)) > 0.0


@pytest.mark.parametrize(
    "objective",
    [
        dict(kind="penalised", lam=1.0, alpha=1.0),
        dict(kind="constrained", tau_rel=0.05),
        dict(kind="targeted", target_ratio=0.5),
    ],
)
def test_every_objective_trains_with_distillation_from_a_frozen_teacher(objective):
    cfg = tiny_cfg(**objective, distill={"weight": 0.5, "temperature": 2.0, "layerwise": 0.1})
    cfg.training.max_steps = 20
    result = train_run(cfg)
    s = result.summary
    assert s["distill_weight"] == 0.5 and s["distill_layerwise"] == 0.1 and math.isfinite(s["metric"])
    steps = [r for r in result.history if "distill_logits" in r]
    assert not steps  # the history keeps evaluations; the step records go to the trackers


def test_the_step_records_carry_both_terms_and_the_teacher_stays_frozen():
    records = []
    from econ_ray.training import RunHooks

    cfg = tiny_cfg({"mode": "dense"}, kind="penalised", lam=0.0, distill={"weight": 1.0, "layerwise": 1.0})
    cfg.training.max_steps = 6
    result = train_run(cfg, hooks=RunHooks(on_step=records.append))
    assert len(records) == 6
    for r in records:
        assert r["distill_logits"] >= 0 and r["distill_hidden"] >= 0
        # weight 1: the loss is the logit term plus the hidden term, not the task loss
        assert r["task_loss"] == pytest.approx(r["distill_logits"] + r["distill_hidden"], rel=1e-5)
    # the student moved away from the teacher: the terms grow from ~0 at the first step
    assert records[0]["distill_logits"] == pytest.approx(0.0, abs=1e-6)
    assert result.summary["steps"] == 6
