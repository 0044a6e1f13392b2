"""Search efficiency: hypervolume against trials and trial-steps for the samplers (issue 6 item 2).

Fast mode (default): the in-process search of ``fastsearch.py`` (same searcher, Pareto and
hypervolume code as ``econ-ray search``; trials are ``train_run`` on the plain engine, sequential).
``--ray``: the real ``run_search`` (Ray Tune + Ray Train + DeepSpeed) per sampler and seed; slow.

    python benchmarks/search_efficiency.py --out runs/bench/search_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastsearch  # noqa: E402

SAMPLERS = ("grid", "random", "tpe", "nsga2", "gp")


def _ray_curve(cfg_path: str, cfg, sampler: str, seed: int, trials: int, out_dir: Path) -> list[dict]:
    import csv
    import os

    from econ_ray.search.driver import run_search

    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{out_dir / 'mlflow.db'}")
    outcome = run_search(
        cfg, config_path=cfg_path, trials=trials, sampler=sampler, seed=seed, run_dir=str(out_dir / f"{sampler}-{seed}")
    )
    with open(Path(outcome.run_dir) / "hypervolume.csv") as f:
        rows = list(csv.DictReader(f))
    recs = json.loads((Path(outcome.run_dir) / "trials.json").read_text())
    steps, curve = 0, []
    for row, rec in zip(rows, recs):
        steps += int((rec["metrics"] or {}).get("steps") or 0) + cfg.objective.dense_steps
        curve.append(
            {"trials": int(row["trials_completed"]), "trial_steps": steps, "hypervolume": float(row["hypervolume"])}
        )
    return curve


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="search_spaces/tiny_priced.yaml")
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override (fast mode)")
    ap.add_argument("--ray", action="store_true", help="the real run_search instead of the in-process trials")
    ap.add_argument("--out", default="runs/bench/search_efficiency.json")
    a = ap.parse_args(argv)
    overrides = {k: json.loads(v) if v[:1] in "0123456789-[{tf" else v for k, v in (s.split("=", 1) for s in a.set)}
    cfg = fastsearch.load_fast(a.config, overrides) if not a.ray else fastsearch.load_fast(a.config, {})
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    samplers = a.samplers.split(",")
    curves: dict[str, dict[int, list[dict]]] = {s: {} for s in samplers}
    ref = None
    t_start = time.time()
    for seed in range(a.seeds):
        for s in samplers:
            t0 = time.time()
            if a.ray:
                curve = _ray_curve(a.config, cfg, s, seed, a.trials, out.parent / "search_efficiency_ray")
            else:
                trials = fastsearch.run_trials(cfg, sampler=s, seed=seed, n_trials=a.trials)
                ref = ref or fastsearch.reference(cfg, trials)
                curve = fastsearch.hv_curve(cfg, trials, ref)
            curves[s][seed] = curve
            print(f"{s:>6} seed {seed}: final hv {curve[-1]['hypervolume']:.6g} ({time.time() - t0:.0f} s)", flush=True)
    # the grid's final hypervolume (median over seeds) is the target
    grid_final = (
        statistics.median(c[-1]["hypervolume"] for c in curves["grid"].values()) if "grid" in curves else math.nan
    )
    rows = []
    for s in samplers:
        finals = [c[-1]["hypervolume"] for c in curves[s].values()]
        reach = [fastsearch.first_reaching(c, grid_final) for c in curves[s].values()]
        reach_steps = [fastsearch.first_reaching(c, grid_final, "trial_steps") for c in curves[s].values()]
        rows.append(
            {
                "sampler": s,
                "final_hv_median": statistics.median(finals),
                "final_hv_min": min(finals),
                "final_hv_max": max(finals),
                "trials_to_grid_final_median": statistics.median(reach),
                "trial_steps_to_grid_final_median": statistics.median(reach_steps),
                "seeds_reaching_grid_final": sum(math.isfinite(r) for r in reach),
            }
        )
    best = max(rows, key=lambda r: r["final_hv_median"] if r["sampler"] != "grid" else -math.inf)
    met = best["trials_to_grid_final_median"] <= a.trials / 2
    result = {
        "mode": "ray" if a.ray else "fast",
        "config": a.config,
        "trials": a.trials,
        "seeds": a.seeds,
        "overrides": {**fastsearch.FAST_OVERRIDES, **overrides} if not a.ray else {},
        "reference_point": ref,
        "grid_final_hv_median": grid_final,
        "table": rows,
        "best_sampler": best["sampler"],
        "target_half_trials_met": met,
        "curves": curves,
        "seconds": time.time() - t_start,
    }
    out.write_text(json.dumps(result, indent=2, default=float))
    _plot(curves, out.with_suffix(".png"), grid_final, a.trials)
    print(
        f"\n{'sampler':>7} {'final hv (median [min, max])':>34} {'trials to grid final':>21} {'steps to grid final':>20}"
    )
    for r in rows:
        print(
            f"{r['sampler']:>7} {r['final_hv_median']:>14.6g} [{r['final_hv_min']:.6g}, {r['final_hv_max']:.6g}]"
            f" {r['trials_to_grid_final_median']:>21} {r['trial_steps_to_grid_final_median']:>20}"
        )
    print(
        f"grid final hv {grid_final:.6g}; best sampler {best['sampler']} reaches it in "
        f"{best['trials_to_grid_final_median']} trials (median) of {a.trials}: "
        f"target <= {a.trials / 2:g} {'met' if met else 'NOT met'}"
    )
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return result


def _plot(curves: dict, path: Path, grid_final: float, trials: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (s, by_seed) in enumerate(curves.items()):
        for j, c in enumerate(by_seed.values()):
            kw = {"color": f"C{i}", "alpha": 0.7, "label": s if j == 0 else None}
            axes[0].plot([r["trials"] for r in c], [r["hypervolume"] for r in c], **kw)
            axes[1].plot([r["trial_steps"] for r in c], [r["hypervolume"] for r in c], **kw)
    for ax in axes:  # the target: the grid's final hypervolume ...
        ax.axhline(grid_final, color="grey", ls="--", lw=0.8)
    axes[0].axvline(trials / 2, color="grey", ls=":", lw=0.8)  # ... within half the trials
    axes[0].set_xlabel("trials")
    axes[1].set_xlabel("trial-steps")
    for ax in axes:
        ax.set_ylabel("hypervolume")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
