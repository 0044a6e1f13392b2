"""Machinery overhead (issue 6 item 5): where the wall time of a real search goes. Runs ``run_search``
(Ray Tune + Ray Train + DeepSpeed) and splits its wall time from the timing records it writes:
the driver's ``timing.json`` (Ray start, ``tuner.fit``, post-processing) and each trial's
``timing.json`` in its checkpoint (written by ``train_worker``, rank 0).

Per trial: launch = trial function start -> Train worker start (TorchTrainer, worker group, process
group); prepare = data, tokenizer, model, install; engine init = ``deepspeed.initialize`` (both phases);
training = dense + main steps; evaluation = validation passes; final evaluation; logging = reports to
Tune and the checkpoint save. Search level: Ray start; Tune setup to first trial; driver
post-processing (Pareto, registry, MLflow artifacts).

    python benchmarks/machinery_overhead.py --trials 2 --set training.max_steps=60 --out runs/bench/machinery_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="wall-time split of a real search")
    ap.add_argument("--config", default="search_spaces/tiny_priced.yaml")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--run-dir", help="split a finished search's run folder instead of running a new search")
    ap.add_argument("--out", default="runs/bench/machinery_overhead.json")
    a = ap.parse_args(argv)
    import yaml

    from econ_ray.config import load_config
    from econ_ray.search.driver import run_search
    from econ_ray.search.trial import TIMING_FILE

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.run_dir:
        run = Path(a.run_dir)
        drv = json.loads((run / "timing.json").read_text())
        wall = drv["t_search_end"] - drv["t_search_start"]
    else:
        cfg = load_config(a.config, overrides={k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)})
        tmp = Path(tempfile.mkdtemp(prefix="machinery-", dir=out.parent.resolve()))
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        t0 = time.time()
        outcome = run_search(
            cfg, config_path=a.config, trials=a.trials, concurrency=a.concurrency, run_dir=str(tmp / "run")
        )
        wall = time.time() - t0
        run = Path(outcome.run_dir)
        drv = json.loads((run / "timing.json").read_text())
    trials = []
    for rec in json.loads((run / "trials.json").read_text()):
        ck = rec.get("checkpoint")
        f = Path(ck, TIMING_FILE) if ck else None
        if f and f.is_file():
            t = json.loads(f.read_text())
            entry = t.get("t_worker_entry", t["t_worker_start"])  # absent in runs older than 2026-11-23 evening
            trials.append(
                {
                    "trial_id": rec["trial_id"],
                    "launch_s": t["t_worker_start"] - t["t_trial_start"],
                    "ray_train_start_s": entry - t["t_trial_start"],
                    "worker_imports_s": t["t_worker_start"] - entry,
                    "prepare_s": t["prepare_s"],
                    "engine_init_s": t["engine_init_s"],
                    "train_s": t["train_s"],
                    "eval_s": t["eval_s"],
                    "final_eval_s": t["final_eval_s"],
                    "logging_s": t["report_s"] + t["save_s"],
                    "n_evals": t["n_evals"],
                    "t_trial_start": t["t_trial_start"],
                    "t_final_report": t["t_final_report"],
                }
            )
    first_trial = min(t["t_trial_start"] for t in trials) if trials else drv["t_fit_start"]
    search = {
        "wall_s": wall,
        "ray_start_s": drv["t_ray_ready"] - drv["t_search_start"],
        "tune_setup_to_first_trial_s": first_trial - drv["t_fit_start"],
        "tune_fit_s": drv["t_fit_end"] - drv["t_fit_start"],
        "post_s": drv["t_search_end"] - drv["t_fit_end"],
    }
    keys = ("launch_s", "prepare_s", "engine_init_s", "train_s", "eval_s", "final_eval_s", "logging_s")
    sums = {k: sum(t[k] for t in trials) for k in keys}
    result = {
        "command": " ".join(sys.argv),
        "search": search,
        "trials": trials,
        "trial_sums": sums,
        "trial_share": {k: v / max(1e-9, sum(sums.values())) for k, v in sums.items()},
        "run_dir": str(run),
    }
    result["ray_train_stages"] = ray_train_stages([t["trial_id"] for t in trials], drv.get("t_search_start", 0.0))
    out.write_text(json.dumps(result, indent=2))
    print("search:", "  ".join(f"{k} {v:.1f}" for k, v in search.items()))
    print(f"{'trial':<14}" + "".join(f"{k:>14}" for k in keys))
    for t in trials:
        print(f"{t['trial_id']:<14}" + "".join(f"{t[k]:>14.2f}" for k in keys))
    print(f"{'share':<14}" + "".join(f"{result['trial_share'][k]:>14.1%}" for k in keys))
    if trials:
        n = len(trials)
        print(
            f"launch, mean per trial: Ray Train start-up (controller, worker actors, process group) "
            f"{sum(t['ray_train_start_s'] for t in trials) / n:.1f} s + worker imports "
            f"{sum(t['worker_imports_s'] for t in trials) / n:.1f} s"
        )
    for tid, st in result["ray_train_stages"].items():
        print(f"  {tid}: " + "  ".join(f"{k} {v:.1f}" for k, v in st.items()))
    print(f"wrote {out}")
    return result


STAGES = {  # Ray Train V2 controller log lines (ray-train-sys-controller-*.log) -> our stage names
    "worker actors created in": "worker_actors_s",
    "Train context initialized on workers in": "train_context_s",
    "Worker group startup completed in": "worker_group_start_s",
}


def ray_train_stages(trial_ids: list[str], since: float, ray_tmp: str = "/tmp/ray") -> dict[str, dict[str, float]]:
    """Per trial, the worker-group start-up stages Ray Train's controller logs, and the wait from
    "Shutting down" to the controller's exit (teardown), read from the JSON controller logs of Ray
    sessions started after ``since``. Matched by run name (our TorchTrainer run is named after the
    trial). Empty when the logs are gone (e.g. ``--run-dir`` on an old run)."""
    import glob
    import re

    want = set(trial_ids)
    out: dict[str, dict[str, float]] = {}
    for f in glob.glob(f"{ray_tmp}/session_*/logs/train/ray-train-sys-controller-*.log"):
        if os.path.getmtime(f) < since:
            continue
        recs = []
        for line in Path(f).read_text(errors="replace").splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                continue
        run = next((r.get("run_name", "") for r in recs if r.get("run_name")), "")
        tid = next((t for t in want if t in run), None)
        if tid is None:
            continue
        st: dict[str, float] = {}
        t_shutdown = None
        for r in recs:
            msg, ts = r.get("message", ""), r.get("timestamp_ns", 0) / 1e9
            for needle, key in STAGES.items():
                m = re.search(re.escape(needle) + r" ([0-9.]+)s", msg)
                if m:
                    st[key] = float(m.group(1))
            if msg.startswith("Shutting down") and t_shutdown is None:
                t_shutdown = ts
        if t_shutdown is not None:
            st["teardown_s"] = max(r.get("timestamp_ns", 0) / 1e9 for r in recs) - t_shutdown
        out[tid] = st
    return out


if __name__ == "__main__":
    main()
