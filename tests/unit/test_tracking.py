"""MLflow tracking and registry against a real MLflow on a SQLite store in a temporary folder."""

import math
import time
from pathlib import Path

import pytest
import torch

from econ_ray.config import parse_config
from econ_ray.modeling import load_model, save_model
from econ_ray.tracking import MlflowTracker, TrackingError, check_tracking_uri, safe_params, tracking_uri
from econ_ray.training import train_run


def tiny_cfg():
    return parse_config(
        {
            "model": {
                "name": "tiny-bert",
                "tiny": {"layers": 2, "hidden": 32, "heads": 4, "intermediate": 64},
                "ffn_activation": "relu",
                "dropout": 0.0,
            },
            "data": {
                "source": "builtin:majority",
                "max_length": 24,
                "heldout_fraction": 0.2,
                "builtin": {"n_train": 300, "n_validation": 100, "max_len": 20, "noise_pct": 10},
            },
            "attention": {"mode": "gates"},
            "objective": {"kind": "penalised", "lam": 1.0, "alpha": 1.0, "beta": 0.0, "dense_steps": 20},
            "training": {
                "lr": 3e-3,
                "gate_lr": 5e-2,
                "batch_size": 32,
                "max_steps": 20,
                "eval_every": 20,
                "seed": 0,
                "progress": False,
            },
        },
        "test.yaml",
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained model, its run result and its saved folder (built once)."""
    cfg = tiny_cfg()
    res = train_run(cfg)
    folder = tmp_path_factory.mktemp("model") / "econ_model"
    p = res.prepared
    save_model(folder, p.model, p.tokenizer, task=p.task, config=cfg.model_dump(), summary=res.summary)
    return cfg, res, folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite database for the module (creating its tables takes a couple of seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder}/mlflow.db", folder


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Run in a scratch working directory; the global MLflow URI points to a database the code
    under test must not use (every call passes its URI explicitly)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/decoy/mlflow.db")
    yield tmp_path
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "decoy").exists()


# ---------------------------------------------------------------------------------------------
# URIs and params


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    other = tmp_path / "other"
    assert tracking_uri(cwd=other) == f"sqlite:///{other.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert tracking_uri() == "http://example.invalid:5000"
    assert tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"


def test_check_tracking_uri(tmp_path):
    check_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    check_tracking_uri("sqlite:///relative.db")  # relative to the (writable) working directory
    check_tracking_uri(tmp_path.as_uri())
    start = time.monotonic()
    with pytest.raises(TrackingError, match="127.0.0.1:9"):
        check_tracking_uri("http://127.0.0.1:9", timeout_s=2.0)
    assert time.monotonic() - start < 3.0
    with pytest.raises(TrackingError, match="does not exist"):
        check_tracking_uri(f"sqlite:///{tmp_path}/missing/mlflow.db")
    with pytest.raises(TrackingError, match="in-memory"):
        check_tracking_uri("sqlite://")
    with pytest.raises(TrackingError, match="unsupported tracking URI"):
        check_tracking_uri("ftp://example.com/x")
    with pytest.raises(TrackingError) as err:
        check_tracking_uri("https://user:hunter2@127.0.0.1:9", timeout_s=1.0)
    assert "hunter2" not in str(err.value) and "\n" not in str(err.value)


def test_safe_params_drops_secrets():
    params = safe_params(
        {
            "AWS_SECRET_ACCESS_KEY": "abc",
            "lam": 0.1,
            "objective": {"tau_rel": 0.05, "kind": "constrained"},
            "hf_token": "t",
            "api_key": "k",
            "db_password": "p",
            "HOME": "/root",
            "note": "hf_abcdefghijklmnopqrstuvwxyz1234",
            "store": "postgresql://me:pw@db/x",
            "tokenizer": "word",
            "k": 4,
            "vault": {"secret": {"lam": 1}},
            "env": {"HF_HOME": "/x"},
            "long": "x" * 7000,
            "none": None,
            "bad name!": 1,
        }
    )
    assert params == {
        "lam": "0.1",
        "objective.tau_rel": "0.05",
        "objective.kind": "constrained",
        "tokenizer": "word",
        "k": "4",
        "long": "x" * 6000,
        "bad name_": "1",
    }


# ---------------------------------------------------------------------------------------------
# Runs


def test_parent_children_metrics_series_failure_artifacts(store, tmp_path):
    uri, _ = store
    tr = MlflowTracker(uri, "runs")
    parent = tr.start_parent(
        "search-1",
        params={"lam": 0.1, "AWS_SECRET_ACCESS_KEY": "abc", "space": {"alpha": [0, 1]}},
        tags={"econ_ray.version": "0.1.0"},
    )
    assert tr.parent_run_id == parent
    a = tr.start_child("t-a", params={"lam": 0.5}, tags={"objective": "penalised"})
    b = tr.start_child("t-b", params={"lam": 2.0})
    assert tr.start_child("t-a", params={"lam": 0.5}) == a and tr.child_id("t-a") == a and a != b
    assert tr.child_id("nope") is None
    for step in range(3):
        tr.log_metrics("t-a", {"ce": 1.0 / (step + 1), "bad": float("nan"), "name": "x", "flag": True}, step=step)
    tr.log_series("t-a", "multiplier", [0.01 * i for i in range(50)])
    tr.finish_child("t-a", metrics={"metric": 0.9, "effective_gflops": 0.004})
    tr.finish_child("t-b", status="FAILED", reason="DivergenceError: loss is NaN at step 7")
    tr.log_parent_metrics({"pareto_size": 2, "hypervolume": 0.5})
    csv = tmp_path / "pareto.csv"
    csv.write_text("trial_id,metric,effective_gflops\nt-a,0.9,0.004\n")
    tr.log_parent_artifacts([csv], artifact_path="results")
    tr.end_parent()

    c = tr.client
    run_a, run_b, run_p = c.get_run(a), c.get_run(b), c.get_run(parent)
    assert run_a.data.tags["mlflow.parentRunId"] == parent == run_b.data.tags["mlflow.parentRunId"]
    assert run_a.data.tags["trial_id"] == "t-a" and run_a.info.run_name == "t-a"
    assert run_a.data.tags["objective"] == "penalised" and run_a.data.params == {"lam": "0.5"}
    assert [m.step for m in c.get_metric_history(a, "ce")] == [0, 1, 2]
    assert "bad" not in run_a.data.metrics and "name" not in run_a.data.metrics
    assert run_a.data.metrics["flag"] == 1.0
    series = sorted(c.get_metric_history(a, "multiplier"), key=lambda m: m.step)
    assert [m.step for m in series] == list(range(50))
    assert series[-1].value == pytest.approx(0.49)
    assert run_a.data.metrics["metric"] == 0.9  # final metrics are the latest values
    assert c.get_metric_history(a, "metric")[0].step == 2
    assert run_a.info.status == "FINISHED"
    assert run_b.info.status == "FAILED" and run_b.data.tags["failure_reason"].startswith("DivergenceError")
    assert run_p.info.status == "FINISHED" and run_p.data.metrics["pareto_size"] == 2
    assert run_p.data.params == {"lam": "0.1", "space.alpha": "[0, 1]"}  # no secret
    assert [f.path for f in c.list_artifacts(parent, "results")] == ["results/pareto.csv"]
    assert Path(store[1], "mlartifacts", "runs").is_dir()  # artifacts next to the database

    with pytest.raises(TrackingError, match="status"):
        tr.finish_child("t-a", status="DONE")
    with pytest.raises(TrackingError, match="no child run"):
        tr.log_metrics("t-zzz", {"x": 1.0}, step=0)


def test_resume_parent_reuses_children(store):
    uri, _ = store
    tr = MlflowTracker(uri, "resume")
    with pytest.raises(TrackingError, match="parent"):
        tr.start_child("t1", params={})
    parent = tr.start_parent("s", params={})
    c1 = tr.start_child("t1", params={"lam": 1})
    tr.end_parent("KILLED")

    again = MlflowTracker(uri, "resume")  # a new driver process after a crash
    again.resume_parent(parent)
    assert again.client.get_run(parent).info.status == "RUNNING"
    assert again.child_id("t1") == c1
    assert again.start_child("t1", params={"lam": 1}) == c1
    c2 = again.start_child("t2", params={})
    assert again.client.get_run(c2).data.tags["mlflow.parentRunId"] == parent
    again.end_parent()
    with pytest.raises(TrackingError):
        MlflowTracker(uri, "other-experiment").resume_parent(parent)


# ---------------------------------------------------------------------------------------------
# Registry


def _logits(model, split, n=64):
    batch = split.batch(torch.arange(n))
    batch.pop("labels")
    with torch.no_grad():
        return model(**batch).logits


def test_registry_round_trip(store, trained, monkeypatch):
    from econ_ray.data.builtin import generate
    from econ_ray.tracking import best_version, list_versions, load_registered, register_model
    from econ_ray.training.evaluate import evaluate

    uri, _ = store
    cfg, res, folder = trained
    s = res.summary
    tr = MlflowTracker(uri, "registry")
    parent = tr.start_parent("search", params={})
    tr.start_child("good", params={})
    tr.start_child("cheap", params={})

    def tags(trial, metric, gflops, higher="true"):
        return {
            "metric": metric,
            "metric_name": "accuracy",
            "effective_gflops": gflops,
            "dense_gflops": s["dense_gflops"],
            "seq_len": 24,
            "lam": 1.0,
            "alpha": 1.0,
            "beta": 0.0,
            "tau": None,
            "objective": "penalised",
            "parent_run_id": parent,
            "higher_is_better": higher,
            "trial_id": trial,
        }

    g = s["effective_gflops"]
    start = time.monotonic()
    v1 = register_model(
        tr, trial_id="good", model_dir=folder, name="econ-tiny", tags=tags("good", s["metric"], g), alias="rank-1"
    )
    v2 = register_model(
        tr,
        trial_id="cheap",
        model_dir=folder,
        name="econ-tiny",
        tags=tags("cheap", s["metric"] - 0.2, g / 2),
        alias="rank-2",
    )
    assert time.monotonic() - start < 15
    assert (v1, v2) == (1, 2)

    rows = list_versions("econ-tiny", uri=uri)
    assert [r["version"] for r in rows] == [2, 1]  # cheapest first
    assert rows[1]["aliases"] == ["rank-1"] and rows[0]["aliases"] == ["rank-2"]
    assert rows[1]["tags"]["effective_gflops"] == pytest.approx(g)
    assert rows[1]["tags"]["objective"] == "penalised" and rows[1]["run_id"] == tr.child_id("good")
    assert "tau" not in rows[1]["tags"]

    assert best_version("econ-tiny", max_gflops=g / 4, uri=uri) is None
    assert best_version("econ-tiny", max_gflops=0.75 * g, uri=uri)["version"] == 2
    assert best_version("econ-tiny", max_gflops=2 * g, uri=uri)["version"] == 1
    assert best_version("econ-tiny", max_gflops=0.75 * g, min_metric=s["metric"] - 0.1, uri=uri) is None
    with pytest.raises(TrackingError, match="no-such-model"):
        list_versions("no-such-model", uri=uri)

    # perplexity: lower is better, min_metric is a ceiling
    tr.start_child("ppl-a", params={})
    tr.start_child("ppl-b", params={})
    register_model(
        tr, trial_id="ppl-a", model_dir=folder, name="econ-ppl", tags=tags("ppl-a", 20.0, 1.0, "false"), alias="rank-2"
    )
    register_model(
        tr, trial_id="ppl-b", model_dir=folder, name="econ-ppl", tags=tags("ppl-b", 10.0, 2.0, "false"), alias="rank-1"
    )
    assert best_version("econ-ppl", max_gflops=5.0, uri=uri)["version"] == 2
    assert best_version("econ-ppl", max_gflops=1.5, uri=uri)["version"] == 1
    assert best_version("econ-ppl", max_gflops=1.5, min_metric=15.0, uri=uri) is None

    # loading by alias gives the same logits as the saved folder and reproduces the logged metric
    p = res.prepared
    model, tok, meta = load_registered("econ-tiny@rank-1", uri=uri)
    original, _, _ = load_model(folder)
    assert meta["summary"]["metric"] == s["metric"]
    torch.testing.assert_close(_logits(model, p.validation), _logits(original, p.validation), rtol=0, atol=0)
    ev = evaluate(model, model.econ_runtime, p.validation, p.task, batch_size=64, seq_len=24)
    assert ev["metric"] == pytest.approx(s["metric"])
    by_version, _, _ = load_registered("econ-tiny/2", uri=uri)
    torch.testing.assert_close(_logits(by_version, p.validation), _logits(original, p.validation), rtol=0, atol=0)
    with pytest.raises(TrackingError, match="rank-9"):
        load_registered("econ-tiny@rank-9", uri=uri)

    # the pyfunc flavour, loaded the standard MLflow way
    import mlflow.pyfunc
    import pandas as pd

    from econ_ray.data.encode import encode_split

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    texts = [ex["text"] for ex in generate("majority", 1, {"n_train": 1, "n_validation": 16, "max_len": 20})[1]]
    served = mlflow.pyfunc.load_model("models:/econ-tiny@rank-1")
    preds = served.predict(pd.DataFrame({"text": texts}))
    enc = encode_split([{"text": t, "label": 0} for t in texts], p.task, tok, 24)
    assert preds == [int(i) for i in _logits(original, enc, n=len(texts)).argmax(-1)]
    assert all(math.isfinite(x) for x in preds)


def test_registry_best_is_one_filtered_query_over_more_versions_than_a_page(store, monkeypatch):
    """60 versions indexed as logged models (their metrics: budget, score, the numeric tags): the
    store answers best-under-a-budget itself, ordered by the signed metric then the budget; the
    client never lists the versions."""
    from mlflow.tracking import MlflowClient

    from econ_ray.tracking import registry

    uri, _ = store
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("many-versions")
    run = client.create_run(exp).info.run_id
    client.create_registered_model("econ-many")
    rows = []
    for i in range(60):
        budget = 0.01 * (i + 1)  # 0.01 ... 0.60
        metric = round(0.5 + 0.4 * (i % 20) / 19, 6)  # three cycles of 0.5 ... 0.9
        tags = {"metric": str(metric), "static_gflops": str(budget), "cost_key": "static_gflops", "lam": "0.1"}
        logged = client.create_logged_model(exp, name="model", source_run_id=run)
        mv = client.create_model_version("econ-many", source=logged.artifact_location, run_id=run, tags=tags)
        registry._index_logged_model(client, logged.model_id, run, "econ-many", int(mv.version), tags)
        rows.append((int(mv.version), budget, metric))

    def no_listing(*a, **k):
        raise AssertionError("best_version listed the versions instead of asking the store")

    monkeypatch.setattr(registry, "list_versions", no_listing)
    for cap, floor in ((0.6, None), (0.3, None), (0.15, None), (0.3, 0.85), (0.05, 0.9), (0.005, None)):
        fits = [r for r in rows if r[1] <= cap + 1e-12 and (floor is None or r[2] >= floor)]
        want = min(fits, key=lambda r: (-r[2], r[1]))[0] if fits else None
        got = registry.best_version("econ-many", max_gflops=cap, min_metric=floor, uri=uri)
        assert (got["version"] if got else None) == want, (cap, floor)
    best = registry.best_version("econ-many", max_gflops=0.3, uri=uri)
    assert best["tags"]["static_gflops"] <= 0.3 and best["name"] == "econ-many"
    # the logged model carries the knobs as params and the numbers as metrics, for the MLflow UI too
    found = client.search_logged_models([exp], filter_string="tags.registered_model = 'econ-many'", max_results=1)
    assert found[0].params.get("cost_key") == "static_gflops"
    assert {"budget", "score", "metric", "static_gflops", "lam"} <= {m.key for m in found[0].metrics}


def test_registry_best_passes_over_versions_at_chance_and_says_so(store, monkeypatch):
    """Versions whose metric is at or below the task's chance level (tag chance_metric) are not "best"
    unless --min-metric says otherwise; the answer counts them. Both the store's index and the
    client-side path (versions registered before the index)."""
    from mlflow.tracking import MlflowClient

    from econ_ray.tracking import registry

    uri, _ = store
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("chance-versions")
    run = client.create_run(exp).info.run_id
    for name, indexed in (("econ-chance-indexed", True), ("econ-chance-plain", False)):
        client.create_registered_model(name)
        # (metric, gflops): a collapsed model (Pearson 0, cheapest), one below chance, a real one
        for metric, g in ((0.0, 0.1), (-0.05, 0.2), (0.6, 0.3)):
            tags = {
                "metric": str(metric),
                "static_gflops": str(g),
                "cost_key": "static_gflops",
                "chance_metric": "0.0",
                "higher_is_better": "true",
            }
            logged = client.create_logged_model(exp, name="model", source_run_id=run)
            mv = client.create_model_version(name, source=logged.artifact_location, run_id=run, tags=tags)
            if indexed:
                registry._index_logged_model(client, logged.model_id, run, name, int(mv.version), tags)
        for cap, want, skipped in ((0.25, None, 2), (1.0, 3, 2), (0.1, None, 1)):
            ans = registry.find_best(name, max_gflops=cap, uri=uri)
            assert (ans.row["version"] if ans.row else None) == want, (name, cap)
            assert ans.skipped_at_chance == skipped and ans.chance == 0.0, (name, cap)
        # a floor given by the user is the floor: the collapsed model is found when asked for
        ans = registry.find_best(name, max_gflops=0.25, min_metric=-1.0, uri=uri)
        assert ans.row["version"] == 1 and ans.skipped_at_chance == 0


def test_registry_lookups_never_create_a_store(tmp_path):
    from econ_ray.tracking import find_best, list_versions, resolve_version

    uri = f"sqlite:///{tmp_path}/absent/mlflow.db"
    for call in (
        lambda: list_versions("m", uri=uri),
        lambda: find_best("m", max_gflops=1.0, uri=uri),
        lambda: resolve_version("m@rank-1", uri=uri),
    ):
        with pytest.raises(TrackingError, match="no tracking store"):
            call()
    assert not (tmp_path / "absent").exists()


def test_registry_load_writes_a_folder_load_model_opens(store, trained, tmp_path):
    from econ_ray.tracking import download_registered, register_model

    uri, _ = store
    cfg, res, folder = trained
    tr = MlflowTracker(uri, "registry-load")
    tr.start_parent("search", params={})
    tr.start_child("t", params={})
    register_model(tr, trial_id="t", model_dir=folder, name="econ-load", tags={"metric": 0.5}, alias="rank-1")
    dst = download_registered("econ-load@rank-1", tmp_path / "out" / "model", uri=uri)
    assert dst == tmp_path / "out" / "model" and (dst / "econ.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]  # no MLflow wrapping left
    model, _, meta = load_model(dst)
    original, _, _ = load_model(folder)
    torch.testing.assert_close(
        _logits(model, res.prepared.validation), _logits(original, res.prepared.validation), rtol=0, atol=0
    )
    with pytest.raises(TrackingError, match="not an empty folder"):
        download_registered("econ-load@rank-1", dst, uri=uri)


def test_a_version_links_to_its_logged_model_with_the_trials_metrics(store, trained):
    from mlflow.tracking import MlflowClient

    from econ_ray.tracking import logged_model_id, register_model

    uri, _ = store
    _, _, folder = trained
    tr = MlflowTracker(uri, "registry-link")
    tr.start_parent("search", params={})
    tr.start_child("t", params={})
    register_model(
        tr,
        trial_id="t",
        model_dir=folder,
        name="econ-link",
        tags={"metric": 0.7, "static_gflops": 0.2, "cost_key": "static_gflops"},
        alias="rank-1",
    )
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    v = client.get_model_version("econ-link", "1")
    mid = logged_model_id(v)
    assert v.source == f"models:/{mid}" and v.tags["model_id"] == mid
    logged = client.get_logged_model(mid)
    assert logged.source_run_id == tr.child_id("t")
    metrics = {m.key: m.value for m in logged.metrics}
    assert {k: metrics[k] for k in ("metric", "budget", "score")} == {"metric": 0.7, "budget": 0.2, "score": 0.7}
