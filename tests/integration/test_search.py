"""A real search, submitted with ``ray job submit`` to a local Ray head started here as the README
shows: trials on 2 Ray Train workers with DeepSpeed on CPU, Optuna, MLflow on SQLite, the model
registry, and the registry lookup by budget (through the CLI). One search serves every test of this
file (it used to be two: a plain search here and a submitted one in test_job_submit.py); the plain
``econ-ray search`` that starts its own local cluster runs in test_divergence, test_resume,
test_tracking_outage, test_worker_failure and test_moasha."""

import json
import os
import random
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import free_port, run_guarded, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXE = str(BIN / "econ-ray")
# 4 trials, 2 at a time; each trial's time is mostly its launch (Ray Train workers, DeepSpeed), not its steps
SHORT = [
    "--set",
    "objective.dense_steps=40",
    "--set",
    "training.max_steps=40",
    "--set",
    "training.eval_every=20",
    "--set",
    "data.builtin.n_train=800",
    "--set",
    "data.builtin.n_validation=300",
]


def _run(args, env, stall=900):
    proc = run_guarded([EXE, *args], env=env, cwd=ROOT, stall=stall)
    return proc


def _http_up(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except urllib.error.HTTPError:
        return True  # answering (401 without a token): the dashboard is up
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _search_json(stdout: str) -> dict:
    """The search's ``--json`` line in the job's log, which ``ray job submit`` prints before its status lines."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"run_dir"' in line:
            return json.loads(line)
    raise AssertionError(f"no search JSON line in the job output:\n{stdout[-3000:]}")


@pytest.fixture(scope="module")
def search(tmp_path_factory, mlflow_template):
    import shutil

    tmp = tmp_path_factory.mktemp("search")
    shutil.copyfile(mlflow_template, tmp / "mlflow.db")  # an empty store (tables made), as after a first use
    port = random.randint(20000, 40000)
    dport = port + 1
    # as after `source .venv/bin/activate` (which sets RAY_AUTH_MODE=token, see the Makefile)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
    }
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dport}",
            # the agents' own ports, free ones: their defaults (52365 ...) may be held by another Ray on
            # the machine, whose agent would then leave this head with none ("No available agent")
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--num-cpus=2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{dport}/api/version"
        # no progress of the head (no CPU in its process tree) for 120 s, or its exit, fails the test
        wait_for(lambda: _http_up(url), stall=120, what="the Ray dashboard", proc=head, poll=1)
        runtime_env = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]}})
        submit = [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            f"http://127.0.0.1:{dport}",
            "--working-dir",
            ".",
            "--runtime-env-json",
            runtime_env,
            "--",
            "econ-ray",
            "search",
            "search_spaces/tiny_priced.yaml",
            "--trials",
            "4",
            "--concurrency",
            "2",
            "--seed",
            "0",
            "--run-dir",
            str(tmp / "run"),
            "--json",
            *SHORT,
        ]

        def submitted():
            # the dashboard answers before the head's job agent is up (on a busy machine, seconds later):
            # a submission refused with "No available agent" created no job, so it is made again
            done = run_guarded(
                submit,
                cwd=ROOT,
                env=env,
                stall=1200,
                also=[head.pid],  # the job runs on the head's cluster: its CPU is the job's progress
            )
            return None if done.returncode != 0 and "No available agent" in done.stdout + done.stderr else done

        proc = wait_for(submitted, stall=120, what="the Ray job agent", proc=head, poll=2)
        assert proc.returncode == 0 and "succeeded" in proc.stdout.lower(), (proc.stdout[-3000:], proc.stderr[-2000:])
        out = _search_json(proc.stdout)
        yield out, env, tmp, proc
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)  # the head, started in its own session, often outlives SIGTERM: then SIGKILL
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def test_ray_job_submit_runs_the_search_on_the_cluster(search):
    """(was test_job_submit.py) the submitted job succeeded and wrote its run folder."""
    out, _, tmp, proc = search
    assert "succeeded" in proc.stdout.lower()
    assert Path(out["run_dir"]).resolve() == (tmp / "run").resolve()
    assert (tmp / "run" / "pareto.json").is_file()


def test_pareto_set_is_non_dominated_and_feasible(search):
    out, _, _, _ = search
    assert out["n_trials"] == 4
    pareto = out["pareto"]
    assert pareto, "empty Pareto set"
    for a in pareto:
        for b in pareto:
            if a is not b:
                assert not (
                    b["metric"] >= a["metric"]
                    and b["effective_gflops"] <= a["effective_gflops"]
                    and (b["metric"] > a["metric"] or b["effective_gflops"] < a["effective_gflops"])
                )
    trials = {t["trial_id"]: t for t in json.loads(Path(out["run_dir"], "trials.json").read_text())}
    for p in pareto:
        assert trials[p["trial_id"]]["status"] == "complete" and trials[p["trial_id"]]["feasible"]
    assert out["hypervolume"] > 0
    for name in (
        "pareto.csv",
        "pareto.json",
        "pareto.png",
        "hypervolume.csv",
        "trials.csv",
        "optuna.db",
        "config.yaml",
    ):
        assert Path(out["run_dir"], name).is_file(), name


def test_mlflow_parent_children_and_registry(search):
    import mlflow
    from mlflow.tracking import MlflowClient

    out, env, _, _ = search
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(out["mlflow_parent_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    for c in children:
        assert {"lam", "alpha", "beta"} <= set(c.data.params)
        assert "metric" in c.data.metrics and "effective_gflops" in c.data.metrics
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto.csv", "pareto.png", "hypervolume.csv"} <= arts
    versions = client.search_model_versions(f"name = '{out['registered_model']}'")
    assert len(versions) == len(out["pareto"])
    for v in versions:
        for tag in (
            "metric",
            "metric_name",
            "effective_gflops",
            "dense_gflops",
            "seq_len",
            "lam",
            "alpha",
            "beta",
            "objective",
            "parent_run_id",
        ):
            assert tag in v.tags, tag
        assert v.tags["parent_run_id"] == out["mlflow_parent_run_id"]
    del mlflow


def test_records_read_right_by_optuna_and_mlflow_clients(search):
    """What Optuna's and MLflow's own clients read: the study's objective names and constraints, the
    registry version linked to its logged model and that model's metrics, the whole trained config as
    params, MLflow's source tags, and no Tune bookkeeping among a child run's metrics."""
    import optuna
    from mlflow.tracking import MlflowClient

    from econ_ray.search.records import TUNE_BOOKKEEPING

    out, env, _, _ = search
    run = Path(out["run_dir"])
    study = optuna.load_study(
        study_name=yaml.safe_load((run / "config.yaml").read_text())["name"], storage=f"sqlite:///{run / 'optuna.db'}"
    )
    assert study.metric_names == [out["pareto"][0]["metric_name"], "effective_gflops"]
    assert {t.number for t in study.best_trials}  # Optuna's own Pareto set, read through its API
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(out["mlflow_parent_run_id"])
    assert parent.data.params["config_artifact"] == "config.yaml"
    assert parent.data.params["config.training.max_steps"] == "40"  # a --set override of this search
    for run_ in (
        parent,
        *client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        ),
    ):
        tags = run_.data.tags
        assert tags["mlflow.source.name"].startswith("econ-ray search") and tags["mlflow.source.type"] == "LOCAL"
        assert "econ_ray.version" in tags and "mlflow.user" in tags
        if run_ is parent:
            continue
        assert not TUNE_BOOKKEEPING & {k.removeprefix("eval_") for k in run_.data.metrics}
        assert "config.objective.kind" in run_.data.params
    from econ_ray.tracking import logged_model_id

    for v in client.search_model_versions(f"name = '{out['registered_model']}'"):
        assert v.source == f"models:/{logged_model_id(v)}"  # MLflow's link from a version to its logged model
        logged = client.get_logged_model(logged_model_id(v))
        metrics = {m.key: m.value for m in logged.metrics}
        assert metrics["metric"] == pytest.approx(float(v.tags["metric"]))
        assert metrics["budget"] == pytest.approx(float(v.tags[v.tags.get("cost_key", "effective_gflops")]))


def test_registry_best_honours_the_budget(search, capsys, monkeypatch):
    from econ_ray.cli.main import main

    out, env, _, _ = search
    name = out["registered_model"]
    gflops = sorted(p["effective_gflops"] for p in out["pareto"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    # the floor is given: the cheapest Pareto model is found whatever its metric (short trials can
    # collapse to chance level, which `registry best` passes over by default)
    floor = ["--min-metric=-1e9"] if out["pareto"][0]["metric_name"] != "perplexity" else []
    assert main(["registry", "best", name, "--max-gflops", str(gflops[0]), *floor, "--json"]) == 0  # in process
    best = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert best["effective_gflops"] <= gflops[0] * 1.0001
    assert {"name", "version", "metric", "effective_gflops"} <= set(best)
    # the console script: nothing within the budget is exit 1
    proc = _run(["registry", "best", name, "--max-gflops", str(gflops[0] / 10), "--json"], env, stall=120)
    assert proc.returncode == 1 and "no version" in proc.stderr


def test_registered_model_reproduces_its_metric(search):
    from econ_ray.config import load_config
    from econ_ray.data import encode_split, load_task
    from econ_ray.tracking import load_registered
    from econ_ray.training.evaluate import evaluate

    out, env, _, _ = search
    model, tok, meta = load_registered(f"{out['registered_model']}@rank-1", uri=env["MLFLOW_TRACKING_URI"])
    cfg = load_config(Path(out["run_dir"]) / "config.yaml")
    d = cfg.data
    splits = load_task(
        d.source,
        train_size=d.train_size,
        eval_size=d.eval_size,
        heldout_fraction=d.heldout_fraction,
        seed=cfg.training.seed,
        builtin_options=d.builtin,
    )
    val = encode_split(splits.validation, splits.task, tok, d.max_length)
    ev = evaluate(model, model.econ_runtime, val, splits.task, batch_size=64, seq_len=d.max_length)
    assert ev["metric"] == pytest.approx(out["pareto"][0]["metric"], abs=1e-9)
