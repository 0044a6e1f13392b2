"""Turn text examples into fixed-length tensors a model can take.

Every split is padded to exactly ``max_length`` (and truncated to it), so FLOPs are counted at a
known sequence length and every batch has the same shape.

Language modelling: the transformers causal LMs (GPT-2) shift labels internally, so ``labels`` is
``input_ids`` with padding positions set to -100 (ignored by the loss). Text is encoded without
the tokenizer's own special tokens (no ``[CLS]``/``[SEP]`` from the word tokenizer) and the
tokenizer's BOS token, when it has one, is prepended so the first word is also predicted.
A tokenizer without a pad token (GPT-2) gets ``pad_token = eos_token``: padding is masked out of
attention and loss, so which id fills it does not matter. This mutates the tokenizer passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from econ_ray.data.sources import DataError, TaskSpec

Index = torch.Tensor | list[int] | slice | int


@dataclass
class EncodedSplit:
    """One split as tensors: rows are examples, columns token positions (all ``max_length``)."""

    input_ids: torch.Tensor  # (N, L) long
    attention_mask: torch.Tensor  # (N, L) long, 1 on real tokens
    labels: torch.Tensor  # (N,) long (classification) / float (regression); (N, L) long for lm, -100 on padding
    token_type_ids: torch.Tensor | None = None  # (N, L) long, pair segment ids; None for lm / GPT-2

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, idx: Index) -> EncodedSplit:
        """The split made of rows ``idx`` only (a view where ``idx`` is a slice)."""
        if isinstance(idx, int):
            idx = [idx]
        tt = self.token_type_ids
        return EncodedSplit(
            self.input_ids[idx], self.attention_mask[idx], self.labels[idx], None if tt is None else tt[idx]
        )

    def batch(self, idx: Index) -> dict[str, torch.Tensor]:
        """Rows ``idx`` as model keyword arguments, ``labels`` included."""
        if isinstance(idx, int):
            idx = [idx]  # keep the batch dimension
        out = {"input_ids": self.input_ids[idx], "attention_mask": self.attention_mask[idx], "labels": self.labels[idx]}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids[idx]
        return out


def _ensure_pad_token(tokenizer: Any) -> int:
    """The pad id, setting ``pad_token = eos_token`` when the tokenizer has none (GPT-2)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    return int(tokenizer.pad_token_id)


def _encode_lm(examples: list[dict], tokenizer: Any, max_length: int) -> EncodedSplit:
    pad_id = _ensure_pad_token(tokenizer)
    bos = [int(tokenizer.bos_token_id)] if tokenizer.bos_token_id is not None else []
    budget = max_length - len(bos)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text after the BOS token")
    # Padding is done here, not by the tokenizer, so the BOS sits before the text whatever the
    # tokenizer's padding side or special-token template.
    pieces = tokenizer([ex["text"] for ex in examples], add_special_tokens=False, truncation=True, max_length=budget)[
        "input_ids"
    ]
    n = len(examples)
    input_ids = torch.full((n, max_length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, max_length), dtype=torch.long)
    for row, ids in enumerate(pieces):
        seq = bos + list(ids)
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    # Mask by attention, not by pad id: GPT-2's pad id equals its BOS/EOS id.
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return EncodedSplit(input_ids, attention_mask, labels, None)


def _encode_sequence_task(examples: list[dict], task: TaskSpec, tokenizer: Any, max_length: int) -> EncodedSplit:
    _ensure_pad_token(tokenizer)
    texts = [ex["text"] for ex in examples]
    pairs: list[str] | None = None
    if any(ex.get("text_pair") is not None for ex in examples):
        pairs = [ex.get("text_pair") or "" for ex in examples]
    enc = tokenizer(texts, pairs, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    dtype = torch.float32 if task.kind == "regression" else torch.long
    labels = torch.tensor([ex["label"] for ex in examples], dtype=dtype)
    token_type_ids = enc.get("token_type_ids")
    return EncodedSplit(
        enc["input_ids"].long(),
        enc["attention_mask"].long(),
        labels,
        token_type_ids.long() if token_type_ids is not None else None,
    )


def pack_lm(examples: list[dict], tokenizer: Any, max_length: int) -> EncodedSplit:
    """GPT-2's packing: every text followed by the end-of-text token, one token stream, cut into blocks of
    ``max_length`` (the last partial block dropped); every position is a real token and a target."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("packing needs a tokenizer with an end-of-text (eos) token")
    pieces = tokenizer([ex["text"] for ex in examples], add_special_tokens=False)["input_ids"]
    stream = [t for ids in pieces for t in (*ids, eos)]
    n = len(stream) // max_length
    if n == 0:
        raise ValueError(f"the split holds {len(stream)} tokens: not one block of max_length {max_length}")
    input_ids = torch.tensor(stream[: n * max_length], dtype=torch.long).view(n, max_length)
    attention_mask = torch.ones_like(input_ids)
    return EncodedSplit(input_ids, attention_mask, input_ids.clone(), None)


def encode_split(
    examples: list[dict], task: TaskSpec, tokenizer: Any, max_length: int, *, packing: bool = False
) -> EncodedSplit:
    """Encode ``examples`` of ``task`` to ``max_length`` tokens each (padded and truncated); language
    modelling with ``packing`` joins them into full blocks instead (:func:`pack_lm`)."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 (got {max_length})")
    if not examples:
        raise DataError(task.name, "cannot encode an empty split")
    if task.kind == "lm":
        if packing:
            try:
                return pack_lm(examples, tokenizer, max_length)
            except ValueError as exc:
                raise DataError(task.name, str(exc), "data.packing") from None
        return _encode_lm(examples, tokenizer, max_length)
    if task.kind == "classification":
        bad = [ex["label"] for ex in examples if not 0 <= int(ex["label"]) < task.num_labels]
        if bad:
            raise DataError(task.name, f"label {bad[0]!r} is outside 0..{task.num_labels - 1}")
    return _encode_sequence_task(examples, task, tokenizer, max_length)
