"""Distillation from the run's dense reference model (CoFi's teacher; METHOD section 7), for every objective.

The teacher is a frozen copy of the model as the dense reference measured it (after the dense phase,
or the loaded model with ``dense_reference: model``). Each main-phase batch goes through both; the
student's task loss becomes

    (1 - weight) * L_task + weight * L_logits + layerwise * L_hidden

``L_logits``: KL(teacher || student) of the temperature-softened distributions, times T^2 (Hinton et
al. 2015), per example for classification and per real token for language modelling; the squared
error of the two predictions for regression. ``L_hidden``: the mean squared error between the
student's and the teacher's hidden states after every layer (structured pruning keeps the hidden
width, so layer l is matched with layer l), over real tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from econ_ray.attention.runtime import runtime_of

if TYPE_CHECKING:
    from econ_ray.config.schema import DistillConfig


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen, dense, eval-mode copy of ``model`` with its own runtime (no masks, no costs, no stats).

    The copy's attention modules and FFN observers share the copied runtime; its input pre-hook is the
    student's (a closure), so a teacher forward sets the student's token mask to the same batch's."""
    teacher = copy.deepcopy(model)
    rt = runtime_of(teacher)
    rt.set_mode("dense")
    rt.head_masks.clear()
    rt.neuron_masks.clear()
    rt.need_costs, rt.collect, rt.capture = False, False, None
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def kl_terms(
    student: torch.Tensor, teacher: torch.Tensor, *, kind: str, temperature: float, token_mask: torch.Tensor | None
) -> torch.Tensor:
    """KL(teacher || student) of the temperature-softened distributions, one value per example
    (classification) or per real predicted token (lm, shifted as the LM loss is)."""
    if kind == "regression":
        raise ValueError("a regression head has no distribution to take a KL divergence of")
    t = temperature
    if kind == "lm":
        s, q = student[:, :-1].float(), teacher[:, :-1].float()
        m = token_mask[:, 1:].bool() if token_mask is not None else torch.ones(s.shape[:2], dtype=torch.bool)
        s, q = s[m.to(s.device)], q[m.to(q.device)]  # (tokens, V)
    else:
        s, q = student.float(), teacher.float()
    log_p_s = torch.log_softmax(s / t, dim=-1)
    log_p_t = torch.log_softmax(q / t, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)


def logit_loss(
    student: torch.Tensor, teacher: torch.Tensor, *, kind: str, temperature: float, token_mask: torch.Tensor | None
) -> torch.Tensor:
    """The logit term: T^2 * KL(teacher || student) of softened distributions (classification, per
    example; lm, per real token, shifted as the LM loss is), or the squared error (regression)."""
    if kind == "regression":
        return ((student.float() - teacher.float()) ** 2).mean()
    kl = kl_terms(student, teacher, kind=kind, temperature=temperature, token_mask=token_mask)
    t = temperature
    return kl.mean() * t * t if kl.numel() else student.float().sum() * 0.0


@torch.no_grad()
def teacher_kl_sum(
    student: nn.Module, teacher: nn.Module, batch: dict[str, torch.Tensor], kind: str
) -> tuple[float, int]:
    """(sum of KL(teacher || student) at temperature 1, number of terms) over one batch, the student in
    whatever mode and gate state it is in (the caller sets eval mode): the constrained quantity of
    ``objective.constrain: kl``."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    t_logits = teacher(**inputs).logits
    s_logits = student(**inputs).logits
    kl = kl_terms(s_logits, t_logits, kind=kind, temperature=1.0, token_mask=batch.get("attention_mask"))
    return float(kl.sum()), int(kl.numel())


def hidden_loss(
    student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], token_mask: torch.Tensor | None
) -> torch.Tensor:
    """Mean squared error of the hidden states after every layer (the embeddings' output left out), over
    real tokens."""
    terms = []
    for hs, ht in zip(student[1:], teacher[1:]):
        err = ((hs.float() - ht.float()) ** 2).mean(dim=-1)  # (B, L)
        if token_mask is not None and token_mask.shape == err.shape:
            m = token_mask.to(err.dtype)
            terms.append((err * m).sum() / m.sum().clamp_min(1.0))
        else:
            terms.append(err.mean())
    return torch.stack(terms).mean()


@dataclass
class Distiller:
    """The teacher and the weights of the two terms; :meth:`loss` is the distilled task loss of a batch."""

    teacher: nn.Module
    cfg: DistillConfig
    kind: str  # the task kind: classification | regression | lm

    @property
    def needs_hidden(self) -> bool:
        return self.cfg.layerwise > 0

    def loss(self, out: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """(distilled loss, record fields) from the student's outputs ``out`` on ``batch``."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            t_out = self.teacher(**inputs, output_hidden_states=self.needs_hidden)
        mask = batch.get("attention_mask")
        c = self.cfg
        kd = logit_loss(out.logits, t_out.logits, kind=self.kind, temperature=c.temperature, token_mask=mask)
        loss = (1.0 - c.weight) * out.loss + c.weight * kd
        rec = {"distill_logits": float(kd.detach())}
        if self.needs_hidden:
            hid = hidden_loss(out.hidden_states, t_out.hidden_states, mask)
            loss = loss + c.layerwise * hid
            rec["distill_hidden"] = float(hid.detach())
        return loss, rec
