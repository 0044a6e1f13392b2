"""The cluster plan of docs/cluster.md (issue 16 item 4), derived, not guessed: for a shipped search
space, the FLOPs of one trial (from the config and ``econ_ray.compute.flops``), the time of one trial
on A100s (those FLOPs over the A100's peak times a model-FLOPs utilisation, MFU), trials per hour per
p4d.24xlarge node, and the wall time and cost of an N-trial search on 1, 2 and 4 nodes.

Every input is printed with where it comes from: a measurement here (``--throughput``: the JSON of
``benchmarks/train_throughput.py``, whose MFU is the one this machine reaches; ``--fixed-s``: the per-trial
launch, prepare and engine-init seconds of ``benchmarks/machinery_overhead.py``), a cited figure (the
constants below), or an assumption named as one (``--node-start-min``).

    python scripts/cluster_plan.py search_spaces/bert_base_mnli.yaml --throughput runs/bench/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Cited figures.
A100_BF16_PEAK = 312e12  # FLOP/s, dense bf16 tensor-core peak, NVIDIA A100 datasheet (SXM4, 40 GB and 80 GB)
GPUS_PER_NODE = 8  # p4d.24xlarge: 8 x A100 40 GB, 96 vCPU (cluster.yaml)
DATASET_ROWS = {
    # source: (training rows, validation rows), from the Hugging Face dataset cards
    "glue/mnli": (392_702, 9_815),  # nyu-mll/glue mnli: train, validation_matched
    "wikitext-103": (1_801_350, 3_760),  # Salesforce/wikitext wikitext-103-raw-v1: train, validation (lines)
}
# Step overhead of the gates over a plain step, measured here (docs/benchmarks.md section 1, penalised
# objective, batch 4, L = 128; MiniLM stands for the BERT family).
GATE_FACTOR = {"bert-base": 1.07, "gpt2": 1.02}
# Prices (USD per hour). p4d.24xlarge: the EC2 Capacity Blocks rate for us-east-2 / us-west-2 listed on
# aws.amazon.com/ec2/capacityblocks/pricing (rates of January 2025); on-demand is higher, pass --price.
P4D_PRICE = 14.75
HEAD_PRICE = 0.384  # m5.2xlarge on-demand, us-east-1 (the head of cluster.yaml)


@dataclass(frozen=True)
class TrialWork:
    arch: str
    seq_len: int
    workers: int
    gpus_per_trial: int
    dense_steps: int
    main_steps: int
    n_evals: int
    flops: float  # FLOPs of one trial, all workers


def trial_work(cfg) -> TrialWork:
    from econ_ray.compute.flops import ARCHS, dense_flops

    name = cfg.model.name.lower()
    arch = "gpt2" if "gpt2" in name else "bert-base"
    L = cfg.data.max_length
    fwd = dense_flops(ARCHS[arch], L).total  # one sequence, forward
    n_train_all, n_val = DATASET_ROWS[cfg.data.source]
    n_train = cfg.data.train_size or n_train_all
    n_train = int(n_train * (1 - cfg.data.heldout_fraction))
    if cfg.data.eval_size:
        n_val = min(n_val, cfg.data.eval_size)
    t, o, d = cfg.training, cfg.objective, cfg.distributed
    workers = d.workers
    B = t.batch_size
    main = t.max_steps or math.ceil(t.epochs * n_train / (B * workers))
    dense = o.dense_steps if o.dense_reference == "warmup" else 0
    step = 3.0 * fwd * B  # forward + backward of one worker's batch
    gated = step * GATE_FACTOR[arch]
    if o.kind == "constrained":  # the held-out forward that drives the multiplier, every constraint_every steps
        gated += fwd * o.constraint_batch_size / o.constraint_every
    n_evals = (dense + main) // t.eval_every + 1
    flops = workers * (dense * step + main * gated) + n_evals * n_val * fwd
    return TrialWork(arch, L, workers, int(workers * d.gpus_per_worker), dense, main, n_evals, flops)


def plan(
    cfg,
    mfu: float,
    fixed_s: float,
    trials: int,
    nodes: list[int],
    node_start_min: float,
    idle_min: float,
    price: float,
    head_price: float,
) -> dict:
    w = trial_work(cfg)
    gpu_s = w.flops / (w.gpus_per_trial * A100_BF16_PEAK * mfu)
    trial_s = gpu_s + fixed_s
    slots = GPUS_PER_NODE // w.gpus_per_trial
    rows = []
    for n in nodes:
        conc = min(trials, slots * n)
        waves = math.ceil(trials / conc)
        wall_s = node_start_min * 60 + waves * trial_s
        node_h = n * (wall_s + idle_min * 60) / 3600  # every node idles idle_min before the autoscaler ends it
        head_h = (wall_s + idle_min * 60) / 3600
        rows.append(
            {
                "nodes": n,
                "concurrency": conc,
                "waves": waves,
                "wall_h": wall_s / 3600,
                "node_hours": node_h,
                "cost_usd": node_h * price + head_h * head_price,
            }
        )
    return {
        "work": w.__dict__,
        "gpu_s_per_trial": gpu_s,
        "trial_s": trial_s,
        "trials_per_hour_per_node": slots * 3600 / trial_s,
        "slots_per_node": slots,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="trials/hour and search wall time / cost on p4d nodes")
    ap.add_argument("config", nargs="+")
    ap.add_argument("--throughput", help="benchmarks/train_throughput.py JSON: the MFU measured here")
    ap.add_argument("--mfu", type=float, help="model FLOPs utilisation on the A100 (overrides --throughput)")
    ap.add_argument("--fixed-s", type=float, default=0.0, help="per-trial launch + prepare + engine init, s")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--nodes", default="1,2,4")
    ap.add_argument("--node-start-min", type=float, default=10.0, help="ASSUMPTION: EC2 launch + setup, min")
    ap.add_argument("--idle-min", type=float, default=10.0, help="cluster.yaml idle_timeout_minutes")
    ap.add_argument("--price", type=float, default=P4D_PRICE)
    ap.add_argument("--head-price", type=float, default=HEAD_PRICE)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from econ_ray.config import load_config

    mfus: dict[str, float] = {}
    if a.throughput:
        for r in json.loads(Path(a.throughput).read_text())["rows"]:
            mfus[r["model"]] = r["mfu"]
    result = {}
    for path in a.config:
        cfg = load_config(path)
        w = trial_work(cfg)
        mfu = a.mfu if a.mfu is not None else mfus.get(w.arch)
        if mfu is None:
            ap.error(f"no MFU for {w.arch}: give --mfu or a --throughput file with that model")
        p = plan(
            cfg,
            mfu,
            a.fixed_s,
            a.trials,
            [int(x) for x in a.nodes.split(",")],
            a.node_start_min,
            a.idle_min,
            a.price,
            a.head_price,
        )
        p["mfu"] = mfu
        result[path] = p
        print(f"## {path}: {w.arch}, L = {w.seq_len}, {w.workers} worker(s), {w.gpus_per_trial} GPU(s) per trial")
        print(
            f"steps: dense {w.dense_steps} + main {w.main_steps}; evaluations {w.n_evals}; "
            f"{w.flops / 1e15:.1f} PFLOP per trial; MFU {100 * mfu:.1f} % of {A100_BF16_PEAK / 1e12:.0f} TFLOP/s"
        )
        print(
            f"one trial: {p['gpu_s_per_trial'] / 60:.1f} min of training + {a.fixed_s:.0f} s fixed = "
            f"{p['trial_s'] / 60:.1f} min; {p['slots_per_node']} at a time per node; "
            f"{p['trials_per_hour_per_node']:.1f} trials per hour per node"
        )
        print(f"| nodes | trials at once | waves | wall (h) | node-hours | cost (USD, {a.price}/h per node) |")
        print("|---|---|---|---|---|---|")
        for r in p["rows"]:
            print(
                f"| {r['nodes']} | {r['concurrency']} | {r['waves']} | {r['wall_h']:.2f} | "
                f"{r['node_hours']:.2f} | {r['cost_usd']:.0f} |"
            )
        print()
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
