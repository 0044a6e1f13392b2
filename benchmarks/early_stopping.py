"""Early stopping (issue 6 item 3): the same search with and without MOASHA, comparing the final
hypervolume and the total trial-steps. Fast mode only: the in-process search of ``fastsearch.py``
with the scheduler's own decision object (``econ_ray.search.moasha.RungBook``, which the Tune
``MOASHAScheduler`` wraps), so the decisions are the code a Ray search runs.
Target (issue 6): within 2 % of the hypervolume at no more than half the trial-steps.

    python benchmarks/early_stopping.py --out runs/bench/early_stopping.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastsearch  # noqa: E402

from econ_ray.metrics.task import higher_is_better  # noqa: E402
from econ_ray.search.driver import _metric_name  # noqa: E402
from econ_ray.search.moasha import RungBook  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="hypervolume and trial-steps with and without MOASHA")
    ap.add_argument("--config", default="search_spaces/quickstart.yaml")
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--grace-period", type=float, default=40.0, help="first rung (training steps)")
    ap.add_argument("--reduction-factor", type=float, default=3.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override of the fast setting, e.g. training.max_steps=360 (longer trials)")
    ap.add_argument("--out", default="runs/bench/early_stopping.json")
    a = ap.parse_args(argv)
    from econ_ray.config import parse_override

    cfg = fastsearch.load_fast(a.config, dict(parse_override(x) for x in a.set))
    maximize = higher_is_better(_metric_name(cfg))
    runs, ref, t_start = [], None, time.time()
    for seed in range(a.seeds):
        for kind in ("fifo", "moasha"):
            book = RungBook(a.grace_period, a.reduction_factor, max_t=cfg.training.max_steps,
                            maximize=(maximize, False)) if kind == "moasha" else None
            t0 = time.time()
            trials = fastsearch.run_trials(cfg, sampler=a.sampler, seed=seed, n_trials=a.trials, book=book)
            ref = ref or fastsearch.reference(cfg, trials)
            curve = fastsearch.hv_curve(cfg, trials, ref)
            runs.append({"seed": seed, "scheduler": kind, "final_hv": curve[-1]["hypervolume"],
                         "trial_steps": curve[-1]["trial_steps"], "stopped": sum(t.status == "stopped" for t in trials),
                         "seconds": time.time() - t0, "curve": curve,
                         "trials": [{"id": t.trial_id, "status": t.status, "steps": t.steps, "knobs": t.knobs} for t in trials]})
            print(f"seed {seed} {kind:>6}: hv {runs[-1]['final_hv']:.6g}, trial-steps {runs[-1]['trial_steps']}, "
                  f"stopped {runs[-1]['stopped']} ({runs[-1]['seconds']:.0f} s)", flush=True)
    pairs = []
    for seed in range(a.seeds):
        f = next(r for r in runs if r["seed"] == seed and r["scheduler"] == "fifo")
        m = next(r for r in runs if r["seed"] == seed and r["scheduler"] == "moasha")
        pairs.append({"seed": seed, "hv_ratio": m["final_hv"] / f["final_hv"] if f["final_hv"] > 0 else None,
                      "steps_ratio": m["trial_steps"] / f["trial_steps"]})
    hv_ratios = [p["hv_ratio"] for p in pairs if p["hv_ratio"] is not None]
    hv_med = statistics.median(hv_ratios) if hv_ratios else None
    steps_med = statistics.median(p["steps_ratio"] for p in pairs)
    met = hv_med is not None and hv_med >= 0.98 and steps_med <= 0.5
    result = {"config": a.config, "fast_overrides": fastsearch.FAST_OVERRIDES, "sampler": a.sampler, "trials": a.trials,
              "seeds": a.seeds, "overrides": a.set, "grace_period": a.grace_period, "reduction_factor": a.reduction_factor,
              "reference_point": ref, "pairs": pairs, "hv_ratio_median": hv_med, "steps_ratio_median": steps_med,
              "target_met": met, "runs": runs, "seconds": time.time() - t_start}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"\n{'seed':>4} {'hv MOASHA / FIFO':>17} {'trial-steps MOASHA / FIFO':>26}")
    for p in pairs:
        hv = f"{p['hv_ratio']:.3f}" if p["hv_ratio"] is not None else "n/a"
        print(f"{p['seed']:>4} {hv:>17} {p['steps_ratio']:>26.3f}")
    print(f"median: hv ratio {hv_med}, steps ratio {steps_med:.3f}; target (hv >= 0.98 at steps <= 0.5) "
          f"{'met' if met else 'NOT met'}; wrote {out}")
    return result


if __name__ == "__main__":
    main()
