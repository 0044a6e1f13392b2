"""Seed 003's chain on real text, small, through the CLI as a user runs it: a GPT-2 with a BPE learnt from
Python's own documentation (builtin:pydoc-corpus), packed blocks, cosine schedule and clipping; then
post-training with the models saved; then the induction circuits of the dense and the post-trained model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_guarded

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("econ-ray"))


def _run(*args: str) -> subprocess.CompletedProcess:
    proc = run_guarded([EXE, *args], cwd=ROOT, stall=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm_chain")
    cfg = yaml.safe_load((ROOT / "search_spaces" / "gpt2_pydoc_posttrain.yaml").read_text())
    cfg["model"].update(tiny={"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128}, vocab_size=512)
    cfg["data"].update(max_length=48, builtin={"n_train": 1500, "n_validation": 100}, heldout_fraction=0.1)
    cfg["objective"].update(dense_steps=150, constraint_batch_size=32)
    cfg["training"].update(lr=3e-3, batch_size=16, max_steps=60, eval_every=30)
    path = tmp / "lm.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = tmp / "post"
    proc = _run("posttrain", str(path), "--eps", "0.05", "--out", str(out), "--save-models", "--json")
    return tmp, out, json.loads(proc.stdout.strip().splitlines()[-1])


def test_posttrain_on_a_packed_bpe_corpus_saves_every_compared_model(chain):
    _, out, result = chain
    assert result["task"] == "builtin:pydoc-corpus" and result["seq_len"] == 48
    rows = {r["method"]: r for r in result["rows"] if r.get("model_dir")}
    assert set(rows) == {"dense", "gates", "dense_continued"}
    dense = rows["dense"]
    # packed blocks: every query of a 48-token block is a real token, so 24.5 valid keys per query
    assert result["mean_valid_keys_per_query"] == pytest.approx(24.5)
    assert dense["ce"] < 6.2  # below ln(512): the model learnt from the text
    meta = json.loads((Path(rows["gates"]["model_dir"]) / "econ.json").read_text())
    assert meta["config"]["model"]["tokenizer"] == "bpe" and meta["config"]["data"]["packing"] is True
    assert (Path(dense["model_dir"]) / "model" / "tokenizer.json").is_file()
    assert (out / "posttrain.png").is_file()


def test_induction_circuits_of_the_saved_models_or_a_plain_refusal(chain):
    """The circuit command on the saved real-text models. 150 dense steps do not teach a 2-layer model
    induction (measured 2026-12-06: clean - corrupted metric 0.03 nats for the dense model, 0.002 for the
    post-trained one), so this checks the path on BPE models of packed text, not circuit sizes: either a
    circuit verified by patching, or exit 2 saying the model has not learned the task."""
    _, out, _ = chain
    counted = {}
    for name in ("dense", "gates_eps0.05"):
        args = ["circuit", str(out / "models" / name), "--task", "induction", "--pairs", "40", "--json"]
        proc = run_guarded([EXE, *args], cwd=ROOT, stall=600)
        if proc.returncode == 2:
            assert "has not learned the task" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
            continue
        assert proc.returncode == 0, proc.stderr[-3000:]
        s = json.loads(proc.stdout.strip().splitlines()[-1])
        assert s["metric_clean"] > s["metric_corrupt"]
        assert s["metric_recovered"] >= 0.9 and 0 < s["edges_90"] <= s["total_edges"]
        assert s["total_edges"] <= 4 * 2 * 33 * 34 // 2  # 2 layers x 4 heads, BOS + 2 x 16 tokens, causal
        counted[name] = s["total_edges"]
    if len(counted) == 2:  # the post-trained model's closed edges carry nothing: fewer edges count
        assert counted["gates_eps0.05"] <= counted["dense"]
