"""Training throughput against the machine's matrix-multiply peak (issue 16 item 4, the cluster plan).

For the two shapes of the real-scale search spaces, one plain training step (stock ``transformers``
model, random init, forward + backward + AdamW) at the searched sequence length: its time, the FLOPs
it does (3 x the forward FLOPs of ``econ_ray.compute.flops.dense_flops`` x batch: backward is about
twice the forward), and so the achieved FLOP/s. The same process measures the peak it could reach:
a large square matrix multiply (``torch.mm``, fp32 on CPU, bf16 on CUDA). Their ratio is the model
FLOPs utilisation (MFU) of this machine; docs/cluster.md scales the A100's peak by it.

    python benchmarks/train_throughput.py --out runs/bench/train_throughput.json

Time = median of ``--steps`` steps after ``--warmup``; the matmul peak = median of 5 after 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

SHAPES = {
    # name: (econ_ray.compute.flops arch, sequence length of the shipped search space)
    "bert-base": ("bert-base", 128),  # search_spaces/bert_base_mnli.yaml, data.max_length
    "gpt2": ("gpt2", 512),  # search_spaces/gpt2_wikitext103.yaml, data.max_length
}


def _build(name: str):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if name == "bert-base":
        return BertForSequenceClassification(BertConfig(num_labels=3))
    return GPT2LMHeadModel(GPT2Config())


def _batch(model, name: str, batch: int, seq: int, device):
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    labels = ids.clone() if name == "gpt2" else torch.randint(0, 3, (batch,), generator=g)
    return {"input_ids": ids.to(device), "labels": labels.to(device)}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, n: int) -> float:
    """FLOP/s of an n x n x n matrix multiply (2 n^3 FLOPs), median of 5 after 2 warm-ups."""
    import torch

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(7):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def step_time(name: str, batch: int, seq: int, device, warmup: int, steps: int) -> float:
    import torch

    model = _build(name).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    data = _batch(model, name, batch, seq, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None
    times = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        if autocast is not None:
            with autocast:
                loss = model(**data).loss
        else:
            loss = model(**data).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def tokenize_rate(n_pairs: int) -> float:
    """Sentence pairs per second through the BERT WordPiece tokenizer (the installed MiniLM's, the
    bert-base-uncased vocabulary) as ``econ_ray.data.encode`` calls it: pairs of 20 and 10 words (about
    an MNLI premise and hypothesis), padded and truncated to 128 tokens, in one call."""
    import random

    from transformers import AutoTokenizer

    from econ_ray.modeling import minilm_path

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    words = [w for w in tok.get_vocab() if w.isalpha() and len(w) > 2]
    rng = random.Random(0)
    premises = [" ".join(rng.choices(words, k=20)) for _ in range(n_pairs)]
    hypotheses = [" ".join(rng.choices(words, k=10)) for _ in range(n_pairs)]
    t0 = time.perf_counter()
    tok(premises, hypotheses, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
    return n_pairs / (time.perf_counter() - t0)


def step_flops(name: str, batch: int) -> float:
    from econ_ray.compute.flops import ARCHS, dense_flops

    arch, seq = SHAPES[name]
    return 3.0 * dense_flops(ARCHS[arch], seq).total * batch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="training-step FLOP/s against the matmul peak (MFU)")
    ap.add_argument("--models", default="bert-base,gpt2")
    ap.add_argument("--batch", default="bert-base=8,gpt2=2", help="NAME=BATCH,... (per step)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--matmul", type=int, default=4096, help="side of the square matmul for the peak")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--tokenize", type=int, default=20000, help="sentence pairs for the tokenizer rate (0: skip)")
    ap.add_argument("--out", default="runs/bench/train_throughput.json")
    a = ap.parse_args(argv)
    import torch

    dev = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    batches = {k: int(v) for k, v in (s.split("=") for s in a.batch.split(","))}
    peak = matmul_peak(dev, a.matmul)
    rows = []
    for name in a.models.split(","):
        seq = SHAPES[name][1]
        bs = batches[name]
        t = step_time(name, bs, seq, dev, a.warmup, a.steps)
        fl = step_flops(name, bs)
        rows.append(
            {
                "model": name,
                "seq_len": seq,
                "batch": bs,
                "step_s": t,
                "step_tflop": fl / 1e12,
                "achieved_tflops": fl / t / 1e12,
                "mfu": fl / t / peak,
            }
        )
    rate = tokenize_rate(a.tokenize) if a.tokenize else None
    out = {
        "tokenize_pairs_per_s": rate,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "matmul_side": a.matmul,
        "matmul_peak_tflops": peak / 1e12,
        "rows": rows,
    }
    print(f"device {out['device']} ({out['threads']} threads); matmul peak {peak / 1e12:.4f} TFLOP/s")
    print("| model | L | batch | step s | TFLOP per step | achieved TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['seq_len']} | {r['batch']} | {r['step_s']:.3f} | {r['step_tflop']:.3f} "
            f"| {r['achieved_tflops']:.4f} | {100 * r['mfu']:.1f} % |"
        )
    if rate:
        print(f"tokenizer: {rate:.0f} sentence pairs per second (20 + 10 words, padded to 128), 1 process")
    p = Path(a.out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
