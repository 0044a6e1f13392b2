"""econ-ray circuit through the CLI, as a user runs it: a tiny GPT-2 trained on the built-in addition task,
dense and with priced gates, and the circuits of both (components and attention edges for 90 %)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_guarded

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("econ-ray"))
FILE = str(ROOT / "search_spaces" / "posttrain_gpt2.yaml")


def _run(*args: str, stall: int = 900) -> subprocess.CompletedProcess:
    proc = run_guarded([EXE, *args], cwd=ROOT, stall=stall)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("circuit")
    dense, gated = tmp / "dense", tmp / "gated"
    common = ["--set", "objective.dense_steps=0", "--json"]
    _run("train", FILE, "--objective", "penalised", "--lam", "0", "--attention", "dense", "--max-steps", "600",
         "--save", str(dense), *common)  # fmt: skip
    _run("train", FILE, "--objective", "penalised", "--lam", "1", "--attention", "gates", "--max-steps", "600",
         "--set", f"model.name={dense}/model", "--set", "objective.dense_reference=model", "--save", str(gated),
         *common)  # fmt: skip
    return tmp, dense, gated


def _circuit(model: Path, out: Path) -> dict:
    proc = _run("circuit", str(model), "--task", "addition", "--pairs", "200", "--out", str(out), "--json")
    assert "edges:" in proc.stdout and "components:" in proc.stdout
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_dense_models_circuit_recovers_90_percent_with_fewer_edges_than_it_has(models):
    tmp, dense, _ = models
    s = _circuit(dense, tmp / "dense.json")
    assert s["metric_recovered"] >= 0.9 and s["components_recovered"] >= 0.9
    assert 0 < s["edges_90"] < s["total_edges"] == 2 * 4 * 10 * 11 // 2  # 2 layers x 4 heads, 10 tokens, causal
    assert 1 <= s["components_90"] <= s["total_components"] == 10
    assert s["metric_clean"] > s["metric_corrupt"]
    saved = json.loads((tmp / "dense.json").read_text())
    assert len(saved["components"]) == s["components_90"] and 0 < len(saved["edges"]) <= 50
    assert saved["edges"][0].keys() == {"layer", "head", "query", "key", "attribution"}


def test_a_gated_models_circuit_counts_only_its_open_edges(models):
    tmp, dense, gated = models
    d = (
        json.loads((tmp / "dense.json").read_text())
        if (tmp / "dense.json").exists()
        else _circuit(dense, tmp / "d.json")
    )
    g = _circuit(gated, tmp / "gated.json")
    assert g["total_edges"] < d["total_edges"]  # the price closed edges: they carry nothing in either run
    assert g["metric_recovered"] >= 0.9 and 0 < g["edges_90"] <= g["total_edges"]
