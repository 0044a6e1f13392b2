"""Step overhead of econ-ray attention (issue 6 item 1): one training step (forward, backward, AdamW)
of the same model, batch and sequence length in four modes:

* ``plain``: the stock ``transformers`` model (its default attention implementation), no econ install;
* ``dense``: econ-ray installed, dense mode;
* ``penalised``: gates with the penalised objective (lam * (alpha C_attn + beta C_ffn) added to the loss);
* ``constrained``: gates with the constrained objective: the Lagrangian step, plus the held-out no-grad
  forward with deterministic gates that drives the multiplier, which ``train_run`` runs every
  ``objective.constraint_every`` = n steps. The two parts are timed separately in every measured step,
  and the reported step time is amortised: primal + held-out / n, one row per n (``--constraint-every``)
  and per held-out batch size (``--constraint-batch``; the shipped configs use 4x the training batch).

Time: warm-up steps, then the median of N steps (``time.perf_counter``). Memory, two measures:
* ``peak``: CUDA ``torch.cuda.max_memory_allocated`` after the steps minus the allocation before them; on CPU,
  the peak RSS growth of the process over the steps (``getrusage`` max RSS minus the RSS before the warm-up;
  each mode runs in its own subprocess so the high-water marks do not mix);
* ``saved``: bytes of tensors autograd saves for backward in one forward (``saved_tensors_hooks``, distinct
  storages, parameters excluded): the activation memory, deterministic, where an extra NxN per head shows.

    python benchmarks/step_overhead.py --constraint-every 1,4,8 --out runs/bench/step_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("plain", "dense", "penalised", "constrained")
MODELS = {
    "minilm": "MiniLM-L6-H384 (pretrained, 6 layers, 12 heads)",
    "gpt2-small": "GPT-2 small shape (GPT2Config(), random init: 12 layers, 12 heads, d 768)",
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _build(model_name: str):
    import torch
    from transformers import BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    if model_name == "minilm":
        from econ_ray.modeling import minilm_path

        return BertForSequenceClassification.from_pretrained(str(minilm_path()), num_labels=2)
    return GPT2LMHeadModel(GPT2Config())


def _batch(model, model_name: str, batch: int, seq: int, device):
    import torch

    g = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[: batch // 2, seq - seq // 8 :] = 0  # some padding, as real batches have
    out = {"input_ids": ids, "attention_mask": mask}
    out["labels"] = ids.clone() if model_name == "gpt2-small" else torch.randint(0, 2, (batch,), generator=g)
    return {k: v.to(device) for k, v in out.items()}


def measure(
    model_name: str,
    mode: str,
    *,
    batch: int,
    seq: int,
    warmup: int,
    steps: int,
    device: str,
    constraint_batches: tuple[int, ...] = (),
) -> dict:
    """One mode in this process: median step time and memory (constrained: of the primal step and of the
    held-out forward + dual step at each held-out batch size, apart)."""
    import torch

    from econ_ray.attention import install
    from econ_ray.objectives import LagrangeController, penalised_loss

    dev = torch.device(device)
    model = _build(model_name).to(dev)
    rt = None
    if mode != "plain":
        rt = install(model, mode="dense" if mode == "dense" else "gates")
        rt.need_costs = mode in ("penalised", "constrained")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    data = _batch(model, model_name, batch, seq, dev)
    constrained = mode == "constrained"
    helds = {b: _batch(model, model_name, b, seq, dev) for b in (constraint_batches if constrained else ())}
    controller = LagrangeController(tau=1.0, lr=0.05) if constrained else None
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def dual(held) -> None:
        """What train_run does at a multiplier step: held-out CE under deterministic gates (no autograd
        state, no cost terms), then one nuPI step."""
        rt.need_costs = False
        model.eval()
        with torch.no_grad():
            ce = float(model(**held).loss)
        model.train()
        rt.need_costs = True
        controller.update(ce)

    def step() -> dict[int, float]:
        """One training step; returns the seconds of each held-out forward + dual step, by batch size."""
        dual_s = {}
        for b, held in helds.items():  # before the primal update, as in train_run
            t0 = time.perf_counter()
            dual(held)
            sync()
            dual_s[b] = time.perf_counter() - t0
        task = model(**data).loss
        if mode == "penalised":
            attn, ffn = rt.pop_costs()
            loss, _ = penalised_loss(task, attn, ffn, lam=0.5, alpha=1.0, beta=0.5)
        elif mode == "constrained":
            attn, _ = rt.pop_costs()
            loss = controller.lagrangian(torch.stack(attn).mean(), task)
        else:
            loss = task
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return dual_s

    # activation memory of one forward: what autograd saves for backward
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**data).loss
    if rt is not None:
        rt.pop_costs()
    del out
    saved = sum(seen.values())

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    times, duals = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        dual_s = step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0 - sum(dual_s.values()))  # the primal step alone
            duals.append(dual_s)
    if cuda:
        peak = torch.cuda.max_memory_allocated() - base
        how = "torch.cuda.max_memory_allocated - allocated before the steps"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        how = "peak RSS (getrusage ru_maxrss) - RSS before the warm-up steps"
    return {
        "model": model_name,
        "mode": mode,
        "step_s_median": statistics.median(times),
        "step_s_all": times,
        "heldout_s_median": {b: statistics.median(d[b] for d in duals) for b in helds},
        "heldout_s_all": {b: [d[b] for d in duals] for b in helds},
        "peak_bytes": peak,
        "peak_method": how,
        "saved_bytes": saved,
        "attn_implementation": model.config._attn_implementation,
        "batch": batch,
        "seq_len": seq,
        "device": device,
        "threads": torch.get_num_threads(),
    }


def _ints(text: str) -> tuple[int, ...]:
    vals = tuple(int(x) for x in text.split(",") if x.strip())
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return vals


def amortised_rows(r: dict, every: tuple[int, ...]) -> list[dict]:
    """One row per (held-out batch, n) from a constrained measurement: the step time amortised over n,
    primal + (held-out forward + dual step) / n, as train_run with objective.constraint_every = n."""
    rows = []
    for b, held_s in r["heldout_s_median"].items():
        for n in every:
            rows.append(
                {
                    **r,
                    "constraint_batch": int(b),
                    "constraint_every": n,
                    "primal_s_median": r["step_s_median"],
                    "dual_s_median": held_s,
                    "step_s_median": r["step_s_median"] + held_s / n,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="time and memory of one training step: plain vs econ-ray modes")
    ap.add_argument("--models", default="minilm,gpt2-small")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if _has_cuda() else "cpu")
    ap.add_argument(
        "--constraint-every",
        type=_ints,
        default=(1, 4, 8),
        help="constrained mode: multiplier steps every n training steps; one row per n (e.g. 1,4,8)",
    )
    ap.add_argument(
        "--constraint-batch",
        type=_ints,
        default=None,
        help="constrained mode: held-out batch sizes of the multiplier's forward (default: --batch)",
    )
    ap.add_argument("--out", default="runs/bench/step_overhead.json")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)  # subprocess entry
    a = ap.parse_args(argv)
    held = a.constraint_batch or (a.batch,)
    if a.one:
        r = measure(
            a.one[0],
            a.one[1],
            batch=a.batch,
            seq=a.seq,
            warmup=a.warmup,
            steps=a.steps,
            device=a.device,
            constraint_batches=held,
        )
        print(json.dumps(r))
        return r
    rows = []
    for m in a.models.split(","):
        for mode in a.modes.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                m,
                mode,
                "--batch",
                str(a.batch),
                "--seq",
                str(a.seq),
                "--warmup",
                str(a.warmup),
                "--steps",
                str(a.steps),
                "--device",
                a.device,
                "--constraint-batch",
                ",".join(map(str, held)),
            ]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                sys.exit(f"{m} {mode} failed:\n{p.stderr[-3000:]}")
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["heldout_s_median"] = {int(b): v for b, v in r["heldout_s_median"].items()}
            if mode == "constrained":
                rows.extend(amortised_rows(r, a.constraint_every))
                print(
                    f"{m} {mode}: primal {r['step_s_median'] * 1e3:.1f} ms, held-out forward + dual step "
                    + ", ".join(f"batch {b}: {v * 1e3:.1f} ms" for b, v in r["heldout_s_median"].items()),
                    flush=True,
                )
            else:
                rows.append(r)
                print(f"{m} {mode}: {r['step_s_median'] * 1e3:.1f} ms", flush=True)
    for r in rows:
        plain = next(x for x in rows if x["model"] == r["model"] and x["mode"] == "plain")
        r["time_ratio"] = r["step_s_median"] / plain["step_s_median"]
        r["peak_ratio"] = r["peak_bytes"] / plain["peak_bytes"] if plain["peak_bytes"] > 0 else None
        r["saved_ratio"] = r["saved_bytes"] / plain["saved_bytes"]
    gates = [r for r in rows if r["mode"] in ("penalised", "constrained")]

    def met(rows_: list[dict]) -> dict:
        return {
            "time": all(r["time_ratio"] <= 1.15 for r in rows_),
            "memory": all((r["peak_ratio"] or 0) <= 1.3 for r in rows_),
        }

    by_every = {
        f"constrained n={n}": met([r for r in gates if r.get("constraint_every") == n]) for n in a.constraint_every
    }
    result = {
        "rows": rows,
        "targets": {"time_ratio_max": 1.15, "memory_ratio_max": 1.3},
        "time_target_met": all(r["time_ratio"] <= 1.15 for r in gates),
        "memory_target_met": all((r["peak_ratio"] or 0) <= 1.3 for r in gates),
        "met_by_mode": {"penalised": met([r for r in gates if r["mode"] == "penalised"]), **by_every},
        "command": " ".join(sys.argv),
        "models": {m: MODELS[m] for m in a.models.split(",")},
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"\n{'model':<11}{'mode':<26}{'attn impl':>10}{'step ms':>10}{'x plain':>9}{'peak MiB':>10}{'x plain':>9}"
        f"{'saved MiB':>11}{'x plain':>9}"
    )
    for r in rows:
        pr = f"{r['peak_ratio']:.2f}" if r["peak_ratio"] is not None else "n/a"
        label = r["mode"] + (
            f" n={r['constraint_every']} held {r['constraint_batch']}" if "constraint_every" in r else ""
        )
        print(
            f"{r['model']:<11}{label:<26}{r['attn_implementation']:>10}{r['step_s_median'] * 1e3:>10.1f}"
            f"{r['time_ratio']:>9.2f}{r['peak_bytes'] / 2**20:>10.1f}{pr:>9}{r['saved_bytes'] / 2**20:>11.1f}"
            f"{r['saved_ratio']:>9.2f}"
        )
    for name, m in result["met_by_mode"].items():
        print(
            f"targets, {name}: time <= 1.15x plain {'met' if m['time'] else 'NOT met'}; "
            f"memory <= 1.3x plain {'met' if m['memory'] else 'NOT met'}"
        )
    print(f"wrote {out}")
    return result


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
