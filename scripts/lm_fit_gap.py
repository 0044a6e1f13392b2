"""Training against validation cross-entropy of saved causal-LM folders: has the model memorised its text?

    python scripts/lm_fit_gap.py search_spaces/gpt2_pydoc_posttrain.yaml runs/gpt2_pydoc/models/dense ...

Each folder is loaded into the config's data (the same tokenizer, packing and split as training), and
its CE is computed on every training block and on the validation blocks (the run's own evaluation).
Prints one line per model and, with --json, a JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="training vs validation CE of saved causal-LM folders")
    ap.add_argument("config", help="the search-space file the models were trained with")
    ap.add_argument("models", nargs="+", help="saved econ-ray model folders")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from econ_ray.config import load_config
    from econ_ray.experiments.posttrain import prepare_from_folder
    from econ_ray.training.evaluate import task_loss_and_outputs

    cfg = load_config(a.config)
    out = {}
    for folder in a.models:
        p = prepare_from_folder(cfg, folder)
        train_ce, _, _ = task_loss_and_outputs(p.model, p.train, p.task, batch_size=64)
        val_ce, _, _ = task_loss_and_outputs(p.model, p.validation, p.task, batch_size=64)
        out[folder] = {"train_ce": float(train_ce), "validation_ce": float(val_ce), "train_blocks": len(p.train)}
        print(f"{folder}: training CE {train_ce:.3f} ({len(p.train)} blocks), validation CE {val_ce:.3f}")
    if a.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
