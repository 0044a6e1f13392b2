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
    ap.add_argument("--config", default="search_spaces/quickstart.yaml")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--run-dir", help="split a finished search's run folder instead of running a new search")
    ap.add_argument("--out", default="runs/bench/machinery_overhead.json")
    a = ap.parse_args(argv)
    from econ_ray.config import load_config
    from econ_ray.search.driver import run_search
    from econ_ray.search.trial import TIMING_FILE

    import yaml

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
        outcome = run_search(cfg, config_path=a.config, trials=a.trials, concurrency=a.concurrency,
                             run_dir=str(tmp / "run"))
        wall = time.time() - t0
        run = Path(outcome.run_dir)
        drv = json.loads((run / "timing.json").read_text())
    trials = []
    for rec in json.loads((run / "trials.json").read_text()):
        ck = rec.get("checkpoint")
        f = Path(ck, TIMING_FILE) if ck else None
        if f and f.is_file():
            t = json.loads(f.read_text())
            trials.append({"trial_id": rec["trial_id"], "launch_s": t["t_worker_start"] - t["t_trial_start"],
                           "prepare_s": t["prepare_s"], "engine_init_s": t["engine_init_s"], "train_s": t["train_s"],
                           "eval_s": t["eval_s"], "final_eval_s": t["final_eval_s"],
                           "logging_s": t["report_s"] + t["save_s"], "n_evals": t["n_evals"],
                           "t_trial_start": t["t_trial_start"], "t_final_report": t["t_final_report"]})
    first_trial = min(t["t_trial_start"] for t in trials) if trials else drv["t_fit_start"]
    search = {"wall_s": wall, "ray_start_s": drv["t_ray_ready"] - drv["t_search_start"],
              "tune_setup_to_first_trial_s": first_trial - drv["t_fit_start"],
              "tune_fit_s": drv["t_fit_end"] - drv["t_fit_start"],
              "post_s": drv["t_search_end"] - drv["t_fit_end"]}
    keys = ("launch_s", "prepare_s", "engine_init_s", "train_s", "eval_s", "final_eval_s", "logging_s")
    sums = {k: sum(t[k] for t in trials) for k in keys}
    result = {"command": " ".join(sys.argv), "search": search, "trials": trials, "trial_sums": sums,
              "trial_share": {k: v / max(1e-9, sum(sums.values())) for k, v in sums.items()}, "run_dir": str(run)}
    out.write_text(json.dumps(result, indent=2))
    print("search:", "  ".join(f"{k} {v:.1f}" for k, v in search.items()))
    print(f"{'trial':<14}" + "".join(f"{k:>14}" for k in keys))
    for t in trials:
        print(f"{t['trial_id']:<14}" + "".join(f"{t[k]:>14.2f}" for k in keys))
    print(f"{'share':<14}" + "".join(f"{result['trial_share'][k]:>14.1%}" for k in keys))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
