"""No environment variable value or credential reaches MLflow: a planted secret is searched for in
every param, tag, metric name and artifact of a tracked run (real MlflowTracker, the real Tune
callback, the real registry) on a SQLite store in ``tmp_path``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import yaml

from econ_ray.config import parse_config
from econ_ray.modeling import save_model
from econ_ray.search.records import write_trials
from econ_ray.search.tracking_callback import MlflowTuneCallback
from econ_ray.tracking import MlflowTracker, register_model, safe_params
from econ_ray.tracking.store import redact
from econ_ray.training import train_run

ENV_SECRET = "planted-secret-123"  # AWS_SECRET_ACCESS_KEY: not credential-shaped, only its env name says so
HF_TOKEN = "hf_PlantedToken0123456789abcdefXYZ"  # credential-shaped, in a config field
URL_PASSWORD = "planted-pass-789"  # inside a URL in a config field
PLANTED = (ENV_SECRET, HF_TOKEN, URL_PASSWORD)


def _config():
    """A tiny run whose config carries the planted values in fields the builtin task ignores."""
    return parse_config(
        {
            "name": "secrets",
            "model": {"name": "tiny-bert", "tiny": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}},
            "data": {
                "source": "builtin:majority",
                "max_length": 16,
                "builtin": {"n_train": 40, "n_validation": 16, "min_len": 4, "max_len": 12},
                # column names are ignored by builtin sources; here they hold a token and the env value
                "columns": {
                    "text": HF_TOKEN,
                    "text_pair": ENV_SECRET,
                    "label": f"https://alice:{URL_PASSWORD}@data.example.com/x.csv",
                },
            },
            "objective": {"lam": 0.0, "dense_steps": 0},
            "training": {"max_steps": 1, "batch_size": 8, "eval_every": 1, "progress": False, "device": "cpu"},
            "search": {"registered_model": "secrets-model", "space": {"lam": {"low": 0.1, "high": 1.0}}},
        },
        "secrets.yaml",
    )


def _scan(folder: Path, db: Path) -> list[str]:
    """Every planted value found in the database (params, tags, registry, any table) or a file."""
    hits = []
    con = sqlite3.connect(db)
    try:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in con.execute(f'SELECT * FROM "{table}"'):
                text = " ".join(str(v) for v in row)
                hits += [f"{table}: {p}" for p in PLANTED if p in text]
    finally:
        con.close()
    for f in folder.rglob("*"):
        if f.is_file() and f != db:
            data = f.read_bytes()
            hits += [f"{f}: {p}" for p in PLANTED if p.encode() in data]
    return hits


def test_planted_secrets_never_reach_mlflow(tmp_path, monkeypatch, mlflow_db):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    db = store / "mlflow.db"
    mlflow_db(db)  # an empty store (tables made): every planted value found below came from this run
    cfg = _config()

    # a trained tiny model whose saved folder (econ.json) carries the whole run config
    res = train_run(cfg)
    p = res.prepared
    model_dir = save_model(
        tmp_path / "ckpt", p.model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=res.summary
    )
    assert HF_TOKEN in (model_dir / "econ.json").read_text()  # the plant is really there

    tracker = MlflowTracker(f"sqlite:///{db}", experiment=cfg.name)
    flat = cfg.model_dump(mode="json")
    parent = tracker.start_parent(
        "search",
        params={**flat, "env": dict(__import__("os").environ), "source": cfg.data.source},
        tags={"run_dir": str(tmp_path), "columns": json.dumps(cfg.data.columns)},
    )

    callback = MlflowTuneCallback(tracker, cfg)
    trial = SimpleNamespace(
        trial_id="t1", config={"file": flat, "knobs": {"lam": 0.5}, "optuna_trial": 0}, error_file=None
    )
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"step": 1, "metric": 0.5, "final": 0})
    callback.on_trial_result(
        0,
        [],
        trial,
        {
            **{k: v for k, v in res.summary.items() if isinstance(v, (int, float))},
            "final": 1,
            "checkpoint_path": str(model_dir),
        },
    )
    callback.on_trial_complete(0, [], trial)
    # a failed trial whose traceback printed the environment and the config
    err = tmp_path / "error.txt"
    err.write_text(f"Traceback\nKeyError: env AWS_SECRET_ACCESS_KEY={ENV_SECRET} token {HF_TOKEN}\n")
    bad = SimpleNamespace(trial_id="t2", config={"file": flat, "knobs": {"lam": 0.9}}, error_file=str(err))
    callback.on_trial_start(0, [], bad)
    callback.on_trial_error(0, [], bad)

    # the run folder (kept locally as written) and its upload as parent artifacts
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(flat))
    write_trials(run_dir, callback.records())
    tracker.log_parent_artifacts([run_dir / "config.yaml", run_dir / "trials.csv", run_dir])
    register_model(
        tracker,
        trial_id="t1",
        model_dir=model_dir,
        name="secrets-model",
        tags={"metric": 0.5, "columns": json.dumps(cfg.data.columns), "trial_id": "t1"},
        alias="rank-1",
    )
    tracker.end_parent()

    assert db.is_file() and any((store / "mlartifacts").rglob("econ.json"))
    assert _scan(store, db) == []
    params = tracker.client.get_run(parent).data.params
    assert params["objective.lam"] == "0.0" and params["source"] == "builtin:majority"  # the rest is logged
    assert "data.columns.text_pair" not in params and "data.columns.text" not in params
    # the local run folder is left as written (the user's own disk), only uploads are redacted
    assert HF_TOKEN in (run_dir / "config.yaml").read_text()


def test_scan_can_fail(tmp_path, monkeypatch, mlflow_db):
    """The scan finds a plant that is logged unfiltered (so an empty scan above means something)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    store = tmp_path / "store"
    tracker = MlflowTracker(mlflow_db(store / "mlflow.db"), experiment="scan")
    run = tracker.start_parent("x", params={})
    tracker.client.set_tag(run, "raw", ENV_SECRET)  # bypasses the filters on purpose
    f = store / "mlartifacts" / "raw.txt"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(HF_TOKEN)
    hits = _scan(store, store / "mlflow.db")
    assert any(ENV_SECRET in h for h in hits) and any(HF_TOKEN in h for h in hits)


def test_safe_params_and_redact_use_secret_env_values(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    monkeypatch.setenv("SHORT_TOKEN", "1")  # too short to redact ordinary text
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled-for-tests")  # a setting about auth, not a secret
    monkeypatch.setenv("HF_TOKEN_PATH", "/root/.cache/huggingface/token")
    out = safe_params(
        {
            "name": ENV_SECRET,
            "path": f"/data/{ENV_SECRET}/x",
            "lam": 1,
            "n": "1",
            "mode": "disabled-for-tests",
            "cache": "/root/.cache/huggingface/token",
        }
    )
    assert out == {"lam": "1", "n": "1", "mode": "disabled-for-tests", "cache": "/root/.cache/huggingface/token"}
    assert redact(f"key={ENV_SECRET}; url=https://a:{URL_PASSWORD}@h/x; {HF_TOKEN}") == "key=***; url=***h/x; ***"
