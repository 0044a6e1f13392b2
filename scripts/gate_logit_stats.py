#!/usr/bin/env python3
"""How far a gate bias must move to close a head's edges: the attention logits q_i . k_j / sqrt(d) of a
saved BERT-family model on validation rows, per layer and head, over valid (non-padding) edges.

    python scripts/gate_logit_stats.py SEARCH_SPACE.yaml MODEL_DIR [--rows 256] [--out FILE.json]

A gate is open where logit + b_h > 0 (econ-ray gates, METHOD section 3): with b_h = gate_bias_init every
edge whose logit is above -b_h starts open, and closing a fraction q of a head's edges needs b_h below
minus that head's q-quantile. Prints, per layer, the mean over heads of the 5/50/95 % quantiles and the
open fraction at the model's biases, and writes every head's numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from econ_ray.config import load_config
from econ_ray.data import encode_split, load_task_for
from econ_ray.modeling import load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("model_dir")
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    model, tok, _ = load_model(args.model_dir)
    splits = load_task_for(cfg.data, seed=cfg.training.seed)
    val = encode_split(splits.validation[: args.rows], splits.task, tok, cfg.data.max_length)
    layers: Any = model.base_model.encoder.layer  # a BERT-family model
    captured: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []
    for i, layer in enumerate(layers):
        for name in ("query", "key"):
            lin = getattr(layer.attention.self, name)
            hooks.append(lin.register_forward_hook(lambda m, a, out, key=(i, name): captured.__setitem__(key, out)))
    with torch.no_grad():
        model(
            input_ids=val.input_ids,
            attention_mask=val.attention_mask,
            **({"token_type_ids": val.token_type_ids} if getattr(val, "token_type_ids", None) is not None else {}),
        )
    for h in hooks:
        h.remove()
    mask = val.attention_mask.bool()
    valid = mask[:, None, :, None] & mask[:, None, None, :]  # (B, 1, Lq, Lk)
    report = []
    print(f"{'layer':>5} {'q05':>8} {'q50':>8} {'q95':>8} {'bias':>7} {'open':>6}")
    for i, layer in enumerate(layers):
        H = layer.attention.self.num_attention_heads
        q, k = captured[(i, "query")], captured[(i, "key")]
        B, L, D = q.shape
        dh = D // H
        q = q.view(B, L, H, dh).transpose(1, 2)
        k = k.view(B, L, H, dh).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / dh**0.5  # (B, H, L, L)
        bias = getattr(layer.attention.self, "econ_gate_bias", None)
        heads = []
        for h in range(H):
            s = scores[:, h][valid[:, 0]].float()
            qs = torch.quantile(s[torch.randperm(len(s))[:100_000]], torch.tensor([0.05, 0.5, 0.95])).tolist()
            b = float(bias[h].detach()) if bias is not None else 0.0
            heads.append(
                {
                    "head": h,
                    "q05": qs[0],
                    "q50": qs[1],
                    "q95": qs[2],
                    "bias": b,
                    "open": float((s + b > 0).float().mean()),
                }
            )
        report.append({"layer": i, "heads": heads})
        m = {key: sum(x[key] for x in heads) / H for key in ("q05", "q50", "q95", "bias", "open")}
        print(f"{i:>5} {m['q05']:>8.2f} {m['q50']:>8.2f} {m['q95']:>8.2f} {m['bias']:>7.2f} {m['open']:>6.3f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
