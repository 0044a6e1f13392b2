"""Early stopping (issue 6 item 3): the same search with and without MOASHA, comparing the final
hypervolume and the total trial-steps (dense warm-up included). Fast mode only: the in-process search
of ``fastsearch.py`` with the scheduler's own decision object (``econ_ray.search.moasha.RungBook``,
which the Tune ``MOASHAScheduler`` wraps), so the decisions are the code a Ray search runs.
Target (issue 6): within 2 % of the hypervolume at no more than half the trial-steps.

For each FIFO run it also reports the *oracle bound*: the best hypervolume ratio any stopping rule
could reach within half of FIFO's trial-steps, knowing every trial's final point in advance
(complete the best subset, stop every other trial at its first evaluation). Below 0.98 the target
is out of reach of every scheduler in that setting.

``--replay FILE`` re-decides the FIFO runs recorded in an earlier output (every trial's evaluations)
instead of training MOASHA runs: exact while the sampler's proposals do not depend on results (TPE's
random start-up, the first 10 trials, or ``--sampler random``), because a stopped trial's
evaluations are the prefix of its full run's. ``--pool`` replays all recorded trials of all seeds
as one longer search (only for proposals independent of results), in ``--orders`` shuffled orders.

    python benchmarks/early_stopping.py --out runs/bench/early_stopping.json
    python benchmarks/early_stopping.py --replay runs/bench/early_stopping.json --reduction-factor 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastsearch  # noqa: E402

from econ_ray.search import check_run  # noqa: E402
from econ_ray.search.moasha import RANKS, RungBook  # noqa: E402

TARGET_HV, TARGET_STEPS = 0.98, 0.5


def _trial_dict(t: fastsearch.FastTrial) -> dict:
    return {
        "id": t.trial_id,
        "status": t.status,
        "steps": t.steps,
        "knobs": t.knobs,
        "metrics": t.metrics,
        "history": t.history,
    }


def _trial(d: dict) -> fastsearch.FastTrial:
    return fastsearch.FastTrial(
        d["id"], d["status"], d["knobs"], d["steps"], 0.0, d.get("metrics", {}), d.get("history", [])
    )


def replay(
    fifo: list[fastsearch.FastTrial],
    book: RungBook,
    *,
    dense: int,
    max_steps: int,
    eval_every: int,
    foresight: bool = False,
) -> list[fastsearch.FastTrial]:
    """The search of ``fifo`` (complete trials with their evaluations) re-decided by ``book``: a trial the
    book stops at an evaluation keeps that evaluation's step as its cost and counts as stopped.
    ``foresight``: the book sees each trial's *final* point at every rung (perfect prediction), which
    isolates what the asynchronous promotion rule itself loses."""
    out = []
    for t in fifo:

        def seen(h: dict, t=t) -> tuple[float, float]:
            src = t.metrics if foresight else h
            return (src["metric"], src["effective_gflops"])

        stop = next(
            (
                h
                for h in t.history
                if (int(h["step"]) % eval_every == 0 or int(h["step"]) == max_steps)
                and not book.decide(t.trial_id, h["step"], seen(h))
            ),
            None,
        )
        out.append(
            t
            if stop is None
            else fastsearch.FastTrial(t.trial_id, "stopped", t.knobs, dense + int(stop["step"]), 0.0, dict(stop), [])
        )
    return out


def oracle_bound(cfg, fifo: list[fastsearch.FastTrial], ref, *, dense: int, first_eval: int) -> dict:
    """Best hypervolume ratio over subsets of trials run to the end, every other trial stopped at its
    first evaluation, within ``TARGET_STEPS`` of FIFO's trial-steps (knowing the final points: an upper
    bound for any scheduler)."""
    full = [t.steps for t in fifo]
    base = fastsearch.hv_curve(cfg, fifo, ref)[-1]["hypervolume"]
    budget = TARGET_STEPS * sum(full)
    best = {"hv_ratio": 0.0, "complete": [], "max_complete": 0}
    for k in range(1, len(fifo) + 1):
        for keep in itertools.combinations(range(len(fifo)), k):
            cost = sum(full[i] if i in keep else dense + first_eval for i in range(len(fifo)))
            if cost > budget:
                continue
            best["max_complete"] = max(best["max_complete"], k)
            trials = [
                t if i in keep else fastsearch.FastTrial(t.trial_id, "stopped", t.knobs, dense + first_eval, 0.0)
                for i, t in enumerate(fifo)
            ]
            ratio = fastsearch.hv_curve(cfg, trials, ref)[-1]["hypervolume"] / base
            if ratio > best["hv_ratio"]:
                best.update(hv_ratio=ratio, complete=[fifo[i].trial_id for i in keep])
    return best


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="hypervolume and trial-steps with and without MOASHA")
    ap.add_argument("--config", default="search_spaces/tiny_priced.yaml")
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--grace-period", type=float, default=40.0, help="first rung (main-phase training steps)")
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    ap.add_argument("--rank", choices=RANKS, default="hypervolume", help="order of the trials at a rung")
    ap.add_argument(
        "--reference-metric",
        type=float,
        default=None,
        help="hypervolume rank: metric that adds nothing (default: the rung's worst)",
    )
    ap.add_argument(
        "--decide-every",
        type=int,
        default=None,
        help="replay: the scheduler sees every Nth step's evaluation (default: training.eval_every)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of the fast setting, e.g. training.max_steps=360 (longer trials)",
    )
    ap.add_argument("--replay", default=None, metavar="FILE", help="re-decide the FIFO runs recorded in FILE")
    ap.add_argument("--pool", action="store_true", help="replay: all recorded trials as one search")
    ap.add_argument("--foresight", action="store_true", help="replay: rungs see each trial's final point")
    ap.add_argument("--orders", type=int, default=3, help="replay --pool: shuffled orders of the pooled trials")
    ap.add_argument("--out", default="runs/bench/early_stopping.json")
    a = ap.parse_args(argv)
    from econ_ray.config import parse_override

    recorded = json.loads(Path(a.replay).read_text()) if a.replay else None
    if recorded:  # the setting of the recorded runs
        a.config, a.sampler, a.trials, a.set = (
            recorded["config"],
            recorded["sampler"],
            recorded["trials"],
            recorded["overrides"],
        )
        if a.sampler != "random" and a.trials > 10:
            ap.error("--replay is exact only while the sampler ignores results (random, or TPE's first 10 trials)")
    cfg = fastsearch.load_fast(a.config, dict(parse_override(x) for x in a.set))
    maximize = check_run(cfg, a.config).maximize
    dense = cfg.objective.dense_steps if cfg.objective.dense_reference == "warmup" else 0
    max_steps, every = cfg.training.max_steps, cfg.training.eval_every

    def book() -> RungBook:
        return RungBook(
            a.grace_period,
            a.reduction_factor,
            max_t=max_steps,
            maximize=(maximize, False),
            rank=a.rank,
            reference=(a.reference_metric, None),
        )

    runs, ref, t_start = [], None, time.time()
    if recorded:
        fifo_runs = [
            (r["seed"], [_trial(t) for t in r["trials"]]) for r in recorded["runs"] if r["scheduler"] == "fifo"
        ]
        ref = tuple(recorded["reference_point"])
        if a.pool:
            pooled = [t for _, ts in fifo_runs for t in ts]
            fifo_runs = []
            for order in range(a.orders):
                ts = list(pooled)
                random.Random(order).shuffle(ts)
                fifo_runs.append(
                    (
                        order,
                        [
                            fastsearch.FastTrial(f"t{i:03d}", t.status, t.knobs, t.steps, 0.0, t.metrics, t.history)
                            for i, t in enumerate(ts)
                        ],
                    )
                )
        decide_every = a.decide_every or every
    for seed in range(a.seeds) if not recorded else [s for s, _ in fifo_runs]:
        for kind in ("fifo", "moasha"):
            t0 = time.time()
            if recorded:
                fifo = next(ts for s, ts in fifo_runs if s == seed)
                trials = (
                    fifo
                    if kind == "fifo"
                    else replay(
                        fifo, book(), dense=dense, max_steps=max_steps, eval_every=decide_every, foresight=a.foresight
                    )
                )
            else:
                trials = fastsearch.run_trials(
                    cfg, sampler=a.sampler, seed=seed, n_trials=a.trials, book=book() if kind == "moasha" else None
                )
            ref = ref or fastsearch.reference(cfg, trials)
            curve = fastsearch.hv_curve(cfg, trials, ref)
            runs.append(
                {
                    "seed": seed,
                    "scheduler": kind,
                    "final_hv": curve[-1]["hypervolume"],
                    "trial_steps": curve[-1]["trial_steps"],
                    "stopped": sum(t.status == "stopped" for t in trials),
                    "seconds": time.time() - t0,
                    "curve": curve,
                    "trials": [_trial_dict(t) for t in trials],
                }
            )
            if kind == "fifo":
                first = decide_every if recorded else every
                runs[-1]["oracle"] = (
                    oracle_bound(cfg, trials, ref, dense=dense, first_eval=first) if len(trials) <= 12 else None
                )
            print(
                f"seed {seed} {kind:>6}: hv {runs[-1]['final_hv']:.6g}, trial-steps {runs[-1]['trial_steps']}, "
                f"stopped {runs[-1]['stopped']} ({runs[-1]['seconds']:.0f} s)",
                flush=True,
            )
    pairs = []
    for seed in sorted({r["seed"] for r in runs}):
        f = next(r for r in runs if r["seed"] == seed and r["scheduler"] == "fifo")
        m = next(r for r in runs if r["seed"] == seed and r["scheduler"] == "moasha")
        pairs.append(
            {
                "seed": seed,
                "hv_ratio": m["final_hv"] / f["final_hv"] if f["final_hv"] > 0 else None,
                "steps_ratio": m["trial_steps"] / f["trial_steps"],
                "stopped": m["stopped"],
                "oracle_hv_ratio": (f.get("oracle") or {}).get("hv_ratio"),
                "oracle_max_complete": (f.get("oracle") or {}).get("max_complete"),
            }
        )
    hv_ratios = [p["hv_ratio"] for p in pairs if p["hv_ratio"] is not None]
    hv_med = statistics.median(hv_ratios) if hv_ratios else None
    steps_med = statistics.median(p["steps_ratio"] for p in pairs)
    met = hv_med is not None and hv_med >= TARGET_HV and steps_med <= TARGET_STEPS
    met_every = all(
        p["hv_ratio"] is not None and p["hv_ratio"] >= TARGET_HV and p["steps_ratio"] <= TARGET_STEPS for p in pairs
    )
    result = {
        "config": a.config,
        "fast_overrides": fastsearch.FAST_OVERRIDES,
        "sampler": a.sampler,
        "trials": a.trials,
        "seeds": a.seeds,
        "overrides": a.set,
        "grace_period": a.grace_period,
        "reduction_factor": a.reduction_factor,
        "rank": a.rank,
        "reference_metric": a.reference_metric,
        "replay": a.replay,
        "pool": a.pool,
        "foresight": a.foresight,
        "reference_point": ref,
        "pairs": pairs,
        "hv_ratio_median": hv_med,
        "steps_ratio_median": steps_med,
        "target_met": met,
        "target_met_every_seed": met_every,
        "runs": runs,
        "seconds": time.time() - t_start,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"\n{'seed':>4} {'hv MOASHA / FIFO':>17} {'trial-steps MOASHA / FIFO':>26} {'stopped':>8} {'oracle hv':>10}")
    for p in pairs:
        hv = f"{p['hv_ratio']:.3f}" if p["hv_ratio"] is not None else "n/a"
        orc = f"{p['oracle_hv_ratio']:.3f}" if p["oracle_hv_ratio"] is not None else "n/a"
        print(f"{p['seed']:>4} {hv:>17} {p['steps_ratio']:>26.3f} {p['stopped']:>8} {orc:>10}")
    print(
        f"median: hv ratio {hv_med}, steps ratio {steps_med:.3f}; target (hv >= {TARGET_HV} at steps <= {TARGET_STEPS}) "
        f"{'met' if met else 'NOT met'} (every seed: {'yes' if met_every else 'no'}); wrote {out}"
    )
    return result


if __name__ == "__main__":
    main()
