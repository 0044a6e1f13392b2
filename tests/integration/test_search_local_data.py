"""Real 2-trial searches (local Ray, Ray Train, Optuna, MLflow on SQLite) over local files with no
``data.kind``: the metric, its direction and its chance level come from the data layer's task spec.
A ``.txt`` corpus is language modelling, so the search minimises perplexity (Optuna's study, the
Pareto set and the hypervolume's reference); a CSV with numeric labels is regression, so the
search maximises Pearson."""

import json
import os
import random
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import run_guarded

pytestmark = pytest.mark.integration

EXE = str(Path(sys.executable).with_name("econ-ray"))
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "ran",
    "to",
    "house",
    "tree",
    "big",
    "small",
    "red",
    "blue",
    "and",
    "or",
]


def _config(name: str, model: str, source: Path) -> dict:
    return {
        "name": name,
        "model": {"name": model, "tiny": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64}, "dropout": 0.0},
        "data": {"source": str(source), "max_length": 16, "heldout_fraction": 0.2},  # no data.kind
        "attention": {"mode": "gates"},
        "objective": {"kind": "penalised", "alpha": 1.0, "beta": 0.0, "dense_steps": 20},
        "training": {"lr": 3e-3, "batch_size": 16, "max_steps": 20, "eval_every": 20},
        "search": {
            "trials": 2,
            "concurrency": 2,
            "sampler": "grid",  # lam = 1e-3 and 10: a cheap and a dense-ish trial
            "cost": "effective",  # an edge price: its savings are effective FLOPs
            "registered_model": f"econ-ray-{name}",
            "space": {"lam": {"low": 1.0e-3, "high": 10.0, "log": True}},
        },
        "distributed": {"workers": 1, "cpus_per_worker": 1.0, "deepspeed": False},
    }


def _search(tmp: Path, cfg: dict, mlflow_template: Path) -> tuple[dict, list[dict], optuna.Study]:
    import shutil

    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    shutil.copyfile(mlflow_template, tmp / "mlflow.db")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    env.pop("RAY_ADDRESS", None)
    proc = run_guarded(
        [EXE, "search", str(path), "--run-dir", str(tmp / "run"), "--json"],
        env=env,
        cwd=tmp,
        stall=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    trials = json.loads((tmp / "run" / "trials.json").read_text())
    study = optuna.load_study(study_name=cfg["name"], storage=f"sqlite:///{tmp / 'run' / 'optuna.db'}")
    return out, trials, study


def _points(trials: list[dict]) -> list[tuple[float, float]]:
    return [(t["metrics"]["metric"], t["metrics"]["effective_gflops"]) for t in trials if t["status"] == "complete"]


@pytest.fixture(scope="module")
def txt_search(tmp_path_factory, mlflow_template):
    tmp = tmp_path_factory.mktemp("txt")
    rng = random.Random(1)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(400)]
    (tmp / "corpus.txt").write_text("\n".join(lines))
    return _search(tmp, _config("local-txt", "tiny-gpt2", tmp / "corpus.txt"), mlflow_template)


@pytest.fixture(scope="module")
def csv_search(tmp_path_factory, mlflow_template):
    tmp = tmp_path_factory.mktemp("csv")
    rng = random.Random(2)
    rows = ["text,label"]
    for _ in range(400):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        rows.append(f"{' '.join(words)},{words.count('cat') + 0.5 * words.count('dog'):.2f}")  # a float: regression
    (tmp / "scores.csv").write_text("\n".join(rows) + "\n")
    return _search(tmp, _config("local-csv", "tiny-bert", tmp / "scores.csv"), mlflow_template)


def test_txt_corpus_search_minimises_perplexity(txt_search):
    out, trials, study = txt_search
    assert out["n_trials"] == 2 and out["n_failed"] == 0
    assert {p["metric_name"] for p in out["pareto"]} == {"perplexity"}
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    pts = _points(trials)
    for p in out["pareto"]:  # non-dominated under (min perplexity, min GFLOPs)
        assert not any(m < p["metric"] and g <= p["effective_gflops"] for m, g in pts)
    # rank 1 is the lowest perplexity; the reference point is chance (the vocabulary), above every trial
    assert out["pareto"][0]["metric"] == min(m for m, _ in pts)
    vocab = trials[0]["metrics"]["vocab_size"]
    assert out["reference_point"][0] == pytest.approx(vocab) and all(m < vocab for m, _ in pts)
    assert out["hypervolume"] > 0
    assert out["resumed"] == 0 and (Path(out["run_dir"]) / "tune" / "tune").is_dir()  # a new search's Tune experiment


def test_csv_with_numeric_labels_search_maximises_pearson(csv_search):
    out, trials, study = csv_search
    assert out["n_trials"] == 2 and out["n_failed"] == 0
    assert {t["metrics"]["task_kind"] for t in trials} == {"regression"}
    assert {p["metric_name"] for p in out["pareto"]} == {"pearson"}
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    pts = _points(trials)
    for p in out["pareto"]:  # non-dominated under (max Pearson, min GFLOPs)
        assert not any(m > p["metric"] and g <= p["effective_gflops"] for m, g in pts)
    assert out["pareto"][0]["metric"] == max(m for m, _ in pts)
    assert out["reference_point"][0] == 0.0  # Pearson's chance level
