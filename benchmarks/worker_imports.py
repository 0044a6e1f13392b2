"""Start-up imports of a trial's processes (issue 6 item 5): what each new process pays before it works.

Ray Train starts a new controller and new worker processes for every trial, and each imports what
``train_worker`` needs. This times, in fresh interpreters, alternating the variants ``--repeats``
times (median wall seconds):

- ``trial module``: ``import econ_ray.search.trial`` (the Tune trial actor and the Train controller
  unpickle ``train_worker`` from it);
- ``worker, deepspeed plain``: the worker's imports with a plain ``import deepspeed`` (which imports
  MLflow through DeepSpeed's autotuner);
- ``worker, import_deepspeed``: the same with ``econ_ray.training.deepspeed_engine.import_deepspeed``
  (MLflow kept out), as ``train_worker`` does.

    python benchmarks/worker_imports.py --repeats 5 --out runs/bench/worker_imports.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = (
    "import ray.train\n"
    "from econ_ray.modeling import save_model\n"
    "from econ_ray.training import train_run\n"
    "from econ_ray.training.checkpoint import TrainState, load_state, save_state\n"
    "from econ_ray.training.loop import prepare\n"
)
VARIANTS = {
    "trial module": "import econ_ray.search.trial\n",
    "worker, deepspeed plain": "import deepspeed\n" + WORKER,
    "worker, import_deepspeed": (
        "from econ_ray.training.deepspeed_engine import import_deepspeed\nimport_deepspeed()\n" + WORKER
    ),
}


def _time(code: str) -> tuple[float, list[str]]:
    probe = (
        code
        + "import sys, json\nprint(json.dumps([m for m in ('torch', 'optuna', 'mlflow', 'deepspeed') if m in sys.modules]))\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="start-up imports of a trial's processes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="runs/bench/worker_imports.json")
    a = ap.parse_args(argv)
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    loaded: dict[str, list[str]] = {}
    _time(VARIANTS["worker, import_deepspeed"])  # warm the file cache once, not timed
    for _ in range(a.repeats):
        for name, code in VARIANTS.items():
            t, mods = _time(code)
            times[name].append(t)
            loaded[name] = mods
    rows = [
        {"variant": k, "median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "loaded": loaded[k]}
        for k, v in times.items()
    ]
    print(f"{'variant':<28}{'median s':>10}{'min':>8}{'max':>8}  heavy modules loaded")
    for r in rows:
        print(
            f"{r['variant']:<28}{r['median_s']:>10.2f}{r['min_s']:>8.2f}{r['max_s']:>8.2f}  {', '.join(r['loaded']) or '-'}"
        )
    result = {"command": " ".join(sys.argv), "repeats": a.repeats, "rows": rows}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
