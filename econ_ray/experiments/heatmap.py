"""Dense vs sparse attention heatmaps for one input (seed 000 Figure 6).

The probabilities come from the econ attention function itself, through the runtime's capture hook
(``EconRuntime.capture``): what each layer actually multiplies V by. So the "dense" panel is the
softmax of the model in ``mode="dense"`` and the "sparse" panel is the gated weights
``A * softmax`` (dropped mass not renormalised, METHOD section 3), or the renormalised top-k /
budget weights when the sparse model's mode is one of those.

The figure is a grid: one row per chosen (layer, head), two columns (dense, sparse), a shared colour
scale per row, token labels on both axes when the input is short. For one model folder, "dense" is
the same weights with ``mode="dense"``; with two folders, the dense panel comes from the other model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from econ_ray.attention.runtime import EconRuntime
from econ_ray.data import EncodedSplit, TaskSpec, encode_split

LABEL_MAX_TOKENS = 40  # token labels on the axes up to this length


@dataclass(frozen=True)
class Input:
    """One unpadded input as model keyword arguments (batch of 1) and its tokens."""

    batch: dict[str, torch.Tensor]
    tokens: list[str]


def input_from_split(split: EncodedSplit, index: int, tokenizer: Any) -> Input:
    """Row ``index`` of an encoded split, padding removed."""
    if not 0 <= index < len(split):
        raise ValueError(f"--index {index} is outside 0..{len(split) - 1}")
    row = split.batch(index)
    keep = row["attention_mask"][0].bool()
    batch = {k: v[:, keep] for k, v in row.items() if k != "labels"}
    return Input(batch, tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist()))


def input_from_text(text: str, tokenizer: Any, task: TaskSpec, max_length: int) -> Input:
    """``text`` encoded as the task encodes its examples (BOS first for causal LMs), padding removed."""
    if not text.strip():
        raise ValueError("--text is empty")
    example: dict[str, Any] = {"text": text}
    if task.kind != "lm":
        example["label"] = 0.0 if task.kind == "regression" else 0  # unused: only the attention is read
    return input_from_split(encode_split([example], task, tokenizer, max_length), 0, tokenizer)


@torch.no_grad()
def attention_maps(
    model: nn.Module,
    rt: EconRuntime,
    inp: Input,
    *,
    mode: str,
    k: int | None = None,
    budget: float | None = None,
) -> dict[int, torch.Tensor]:
    """{layer: (H, L, L)} attention probabilities of one forward in ``mode`` (eval, deterministic gates).

    The runtime's mode and capture (off by default) and the model's training flag are restored afterwards.
    """
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    captured: dict[int, torch.Tensor] = {}
    try:
        with rt.override(mode=mode, k=k, budget=budget, capture=captured):
            model(**{key: v.to(device) for key, v in inp.batch.items()})
        return {i: w[0].float().cpu() for i, w in sorted(captured.items())}
    finally:
        model.train(was_training)


def valid_edges(n: int, causal: bool) -> torch.Tensor:
    """(L, L) bool: the edges attention may use on one unpadded input."""
    full = torch.ones(n, n, dtype=torch.bool)
    return torch.tril(full) if causal else full


def is_causal(model: nn.Module) -> bool:
    return getattr(model.config, "model_type", "") == "gpt2" or bool(getattr(model.config, "is_decoder", False))


def check_selection(n_layers: int, n_heads: int, layers: list[int], heads: list[int]) -> None:
    """ValueError naming the first layer or head index out of range (or an empty selection)."""
    if not layers or not heads:
        raise ValueError("--layers and --heads need at least one index each")
    for name, idx, n in (("layer", layers, n_layers), ("head", heads, n_heads)):
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"{name} {bad[0]} is out of range: the model has {n} {name}s (0..{n - 1})")


def render(
    dense: dict[int, torch.Tensor],
    sparse: dict[int, torch.Tensor],
    *,
    layers: list[int],
    heads: list[int],
    tokens: list[str],
    causal: bool,
    out: str | Path,
    sparse_label: str = "gated",
) -> dict[str, Any]:
    """Write the PNG grid; return the file, the panels drawn and each sparse panel's kept fraction."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(tokens)
    valid = valid_edges(n, causal)
    pairs = [(layer, head) for layer in layers for head in heads]
    fig = Figure(figsize=(7.2, 3.3 * len(pairs)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(pairs), 2, squeeze=False)
    panels = []
    for row, (layer, head) in enumerate(pairs):
        d, s = dense[layer][head], sparse[layer][head]
        kept = float(((s > 0) & valid).sum()) / float(valid.sum())
        vmax = max(float(d.max()), float(s.max()), 1e-12)
        for col, (name, w) in enumerate((("dense", d), (sparse_label, s))):
            ax = axes[row][col]
            im = ax.imshow(w.numpy(), cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest")
            extra = f", {kept:.0%} of edges kept" if col == 1 else ""
            ax.set_title(f"layer {layer} head {head}: {name}{extra}", fontsize=9)
            if n <= LABEL_MAX_TOKENS:
                ax.set_xticks(range(n), tokens, rotation=90, fontsize=7)
                ax.set_yticks(range(n), tokens, fontsize=7)
            ax.set_xlabel("key", fontsize=8)
            ax.set_ylabel("query", fontsize=8)
            panels.append({"layer": layer, "head": head, "column": name, "kept_fraction": kept if col == 1 else 1.0})
        fig.colorbar(im, ax=axes[row].tolist(), shrink=0.8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return {"file": str(out), "panels": panels, "tokens": tokens}
