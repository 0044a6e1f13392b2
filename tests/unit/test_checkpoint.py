"""Training-state checkpoints: a run resumed from a saved state ends exactly where an uninterrupted run
ends (tiny model, plain AdamW engine, through the files on disk, weights-only loading)."""

import json

import pytest
import torch

from econ_ray.config import parse_config
from econ_ray.training import RunHooks, train_run
from econ_ray.training.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    TrainState,
    atomic_write,
    engine_file,
    load_state,
    save_state,
)


def tiny_cfg(**objective):
    return parse_config(
        {
            "model": {
                "name": "tiny-bert",
                "tiny": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64},
                "ffn_activation": "relu",
                "dropout": 0.0,
            },
            "data": {
                "source": "builtin:majority",
                "max_length": 16,
                "heldout_fraction": 0.2,
                "builtin": {"n_train": 300, "n_validation": 100, "max_len": 14, "noise_pct": 10},
            },
            "attention": {"mode": "gates"},
            "objective": {"dense_steps": 12, **objective},
            "training": {
                "lr": 3e-3,
                "gate_lr": 5e-2,
                "batch_size": 16,
                "max_steps": 16,
                "eval_every": 8,
                "seed": 0,
                "progress": False,
            },
        },
        "test.yaml",
    )


KEYS = ("metric", "ce", "attention_density", "ffn_density", "static_gflops", "effective_gflops", "multiplier")


def _run_with_checkpoints(cfg, tmp_path, every):
    folders = []

    def keep(state: TrainState) -> None:
        folder = tmp_path / f"{state.phase}-{state.step}"
        save_state(folder, state, rank=0)
        folders.append(folder)

    return train_run(cfg, hooks=RunHooks(checkpoint_every=every, on_checkpoint=keep)), folders


@pytest.mark.parametrize(
    "objective,resume_from",
    [
        (dict(kind="penalised", lam=1.0, alpha=1.0, beta=0.5), ("dense-8", "main-8")),
        (dict(kind="constrained", tau_rel=0.05), ("main-8",)),
        # multiplier every 3 steps (updates at 1, 4, 7, 10, 13, 16) on 4 held-out batches of 16, so a wrong
        # fast-forward of the held-out batches or of the schedule changes the multiplier history
        (
            dict(
                kind="constrained",
                tau_rel=0.0,
                constraint_every=3,
                constraint_batch_size=16,
                multiplier={"lr": 1.0, "init": 0.5},
            ),
            ("main-4", "main-8"),
        ),
        # targeted: learned masks and multipliers before the cut (main-4), the fixed cut after it (main-12);
        # with distillation, so the teacher goes through the checkpoint too
        (
            dict(
                kind="targeted",
                target_ratio=0.5,
                target_warmup=0.5,
                finetune_fraction=0.25,
                distill={"weight": 0.5, "layerwise": 0.1},
            ),
            ("main-4", "main-12"),
        ),
        (dict(kind="prune", target_ratio=0.6, prune_method="both"), ("main-8",)),
    ],
)
def test_resumed_run_matches_the_uninterrupted_one(tmp_path, objective, resume_from):
    cfg = tiny_cfg(**objective)
    full, folders = _run_with_checkpoints(cfg, tmp_path, every=4)
    names = [f.name for f in folders]
    assert names == ["dense-4", "dense-8", "main-4", "main-8", "main-12"]
    assert full.summary["restarts"] == 0 and full.summary["resumed_from_step"] is None
    for folder in (tmp_path / name for name in resume_from):
        state = load_state(folder, rank=0)
        res = train_run(cfg, resume=state)
        for k in KEYS:
            assert res.summary[k] == full.summary[k], (folder.name, k)
        assert res.summary["restarts"] == 1
        assert res.summary["resumed_from_step"] == int(folder.name.split("-")[1])
        assert res.summary["resumed_from_phase"] == folder.name.split("-")[0]
        assert res.history == full.history
        assert res.multiplier_history == full.multiplier_history


def test_state_files_load_weights_only_and_without_pickle(tmp_path):
    cfg = tiny_cfg(kind="constrained", tau_rel=0.05)
    _, folders = _run_with_checkpoints(cfg, tmp_path, every=8)
    folder = folders[-1]
    assert json.loads((folder / STATE_FILE).read_text())["phase"] == "main"
    assert (folder / MODEL_FILE).read_bytes()[:8] != b"\x80\x04\x95"  # safetensors, not a pickle
    # the .pt files load under weights_only (no arbitrary objects)
    for name in (engine_file(0), "rng_rank0.pt", "controller.pt"):
        torch.load(folder / name, weights_only=True)
    # a folder without train_state.json (a finished trial's model) is not a training state
    assert load_state(tmp_path / "nothing", rank=0) is None


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def boom(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
