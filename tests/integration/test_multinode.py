"""A search on a Ray cluster of several nodes (Ray's own ``cluster_utils.Cluster``: a head and worker
nodes, each its own raylet with its own CPUs), and the loss of a worker node while a trial trains on it.

One search, watched by two tests: 4 trials, 2 at a time, each one Ray Train worker of 1 CPU, on a
head with no CPU and two 1-CPU worker nodes, so the two running trials must sit on different nodes.
Results go to a ``--storage-path`` folder every node sees (as a shared file system would be); MLflow
and Optuna storage stay with the driver. When a trial has committed a main-phase checkpoint, the
node its worker runs on is removed (its raylet and every process on it killed, as a spot reclaim
does), and a fresh node is added. Where each worker ran is read from Ray's state API."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import EXE, Spawner, communicate_guarded, free_port, last_json, wait_for
from progress_guard import own_children

pytestmark = pytest.mark.integration

N_TRIALS = 4
SETTINGS = [
    "--set",
    "distributed.workers=1",
    "--set",
    "distributed.cpus_per_worker=1",
    "--set",
    "objective.dense_steps=40",
    "--set",
    "training.max_steps=200",
    "--set",
    "training.eval_every=40",
    "--set",
    "training.checkpoint_every=20",
    "--set",
    "data.builtin.n_train=800",
    "--set",
    "data.builtin.n_validation=300",
]


def _history(trial_dir: Path) -> list[tuple[int, int, str]]:
    """(rank, pid, node id the worker said it ran on) of every attempt of a trial, in order."""
    f = trial_dir / "worker_pids" / "history"
    if not f.is_file():
        return []
    return [(int(r), int(p), n) for r, p, n in (line.split() for line in f.read_text().splitlines() if line.strip())]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, mlflow_template):
    import shutil

    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    tmp = tmp_path_factory.mktemp("multinode")
    db = tmp / "mlflow.db"
    shutil.copyfile(mlflow_template, db)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    env.pop("RAY_ADDRESS", None)
    run, shared = tmp / "run", tmp / "shared"
    spawner = Spawner()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": free_port()},
    )
    try:
        first = [cluster.add_node(num_cpus=1) for _ in range(2)]
        ray.init(address=cluster.address)  # this process reads Ray's state API
        driver = spawner.popen(
            [
                EXE,
                "search",
                "search_spaces/tiny_priced.yaml",
                "--address",
                cluster.address,
                "--storage-path",
                str(shared),
                "--run-dir",
                str(run),
                "--trials",
                str(N_TRIALS),
                "--concurrency",
                "2",
                "--seed",
                "0",
                "--json",
                *SETTINGS,
            ],
            env,
        )
        train = shared / "train"

        def checkpointed_trial_on_a_worker_node():
            # a checkpoint folder appears when its upload starts and is committed when the report is in:
            # wait for a trial's second main-phase one, so the first is (almost surely) committed
            for trial_dir in sorted(train.glob("trial_*")):
                if len(list(trial_dir.glob("state-main-*"))) >= 2 and _history(trial_dir):
                    return trial_dir
            return None

        victim_trial = wait_for(
            checkpointed_trial_on_a_worker_node,
            stall=1200,
            what="a main-phase checkpoint",
            proc=driver,
            also=own_children,  # the trials run on the cluster's nodes, processes of this one
            poll=0.2,
        )
        _, pid, said_node = _history(victim_trial)[-1]
        [actor] = list_actors(filters=[("pid", "=", pid)], detail=True)
        assert actor.node_id == said_node
        victim = next(n for n in first if n.node_id == actor.node_id)
        cluster.remove_node(victim, allow_graceful=False)  # the raylet and every process on the node
        added = cluster.add_node(num_cpus=1)
        print(
            f"removed node {victim.node_id[:8]} under {victim_trial.name} (worker pid {pid}); added {added.node_id[:8]}"
        )

        out, err = communicate_guarded(driver, stall=2400, also=own_children)
        assert driver.returncode == 0, err[-3000:]
        workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], detail=True, limit=10_000)
        trial_actors = list_actors(filters=[("class_name", "=", "ImplicitFunc")], detail=True, limit=10_000)
        yield {
            "result": last_json(out),
            "run": run,
            "shared": shared,
            "env": env,
            "victim_trial": victim_trial.name,
            "victim_node": victim.node_id,
            "first_nodes": [n.node_id for n in first],
            "added_node": added.node_id,
            "head_node": cluster.head_node.node_id,
            "worker_node_of_pid": {a.pid: a.node_id for a in workers},
            "trial_actor_nodes": [a.node_id for a in trial_actors],
        }
    finally:
        ray.shutdown()
        spawner.cleanup()
        cluster.shutdown()


def _trials(sc) -> list[dict]:
    return json.loads((sc["run"] / "trials.json").read_text())


def _attempts(sc, trial_name: str) -> list[str]:
    """The node each attempt of a trial's worker ran on, by Ray's state API (pid -> actor -> node)."""
    hist = _history(sc["shared"] / "train" / trial_name)
    assert hist, f"{trial_name} wrote no worker history"
    nodes = []
    for _, pid, said in hist:
        node = sc["worker_node_of_pid"].get(pid)
        assert node == said, f"{trial_name}: worker pid {pid} is on {node} by the state API, {said} by itself"
        nodes.append(node)
    return nodes


def test_trials_spread_over_the_nodes_with_results_on_shared_storage(scenario):
    sc = scenario
    res = sc["result"]
    trials = _trials(sc)
    assert res["n_trials"] == N_TRIALS and res["n_failed"] == 0
    assert len(trials) == N_TRIALS and {t["status"] for t in trials} == {"complete"}
    names = sorted(p.name for p in (sc["shared"] / "train").glob("trial_*"))
    assert len(names) == N_TRIALS
    nodes = {name: _attempts(sc, name) for name in names}
    print("worker nodes per trial:", {k: [n[:8] for n in v] for k, v in nodes.items()})
    used = {n for v in nodes.values() for n in v}
    assert sc["head_node"] not in used  # the head has no CPU: no Train worker may land there
    # the two trials that ran first, side by side, each filled a different 1-CPU worker node
    assert set(sc["first_nodes"]) <= used
    # a node added mid-search is used by the trials that come after
    assert sc["added_node"] in used
    # each trial's own process (and the Train controller attached to its node) lives on the head node
    assert sc["trial_actor_nodes"] and set(sc["trial_actor_nodes"]) == {sc["head_node"]}
    # every trial's model and training states are on the shared storage path, not on a node's disk
    for t in trials:
        assert Path(t["checkpoint"]).resolve().is_relative_to(sc["shared"].resolve()), t["checkpoint"]
        assert (Path(t["checkpoint"]) / "history.json").is_file()


def test_losing_a_node_retries_its_trial_from_the_checkpoint_and_loses_nothing(scenario):
    from mlflow.tracking import MlflowClient

    sc = scenario
    trials = _trials(sc)
    assert len(trials) == N_TRIALS and len({t["trial_id"] for t in trials}) == N_TRIALS
    by_name = {t["trial_id"]: t for t in trials}
    victim = by_name[sc["victim_trial"].removeprefix("trial_")]
    m = victim["metrics"]
    attempts = _attempts(sc, sc["victim_trial"])
    print(
        f"trial {victim['trial_id']}: worker nodes {[n[:8] for n in attempts]}, {m['restarts']} restart(s), "
        f"resumed from {m['resumed_from_phase']} step {m['resumed_from_step']}"
    )
    # the trial's worker was on the removed node, and was restarted on a node that is still there
    assert attempts[0] == sc["victim_node"] and attempts[-1] != sc["victim_node"] and len(attempts) >= 2
    assert victim["status"] == "complete" and m["restarts"] >= 1
    assert m["resumed_from_phase"] == "main" and m["resumed_from_step"] > 0 and m["steps"] == 200
    history = json.loads((Path(victim["checkpoint"]) / "history.json").read_text())
    assert [e["step"] for e in history["evaluations"]] == [40, 80, 120, 160, 200]  # each evaluation once
    restarted = [t for t in trials if t["metrics"].get("restarts")]
    print(f"trials asked {N_TRIALS}, finished {len(trials)}, retried {len(restarted)}, lost 0")

    # Optuna: one COMPLETE trial per Tune trial, none left RUNNING
    with sqlite3.connect(sc["run"] / "optuna.db") as db:
        states = [s for (s,) in db.execute("select state from trials")]
    assert states.count("COMPLETE") == N_TRIALS and "RUNNING" not in states

    # MLflow: one finished child run per trial, none twice; the registry holds the Pareto set, none twice
    client = MlflowClient(sc["env"]["MLFLOW_TRACKING_URI"])
    parent_id = sc["result"]["mlflow_parent_run_id"]
    parent = client.get_run(parent_id)
    kids = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(k.data.tags["trial_id"] for k in kids) == sorted(by_name)
    assert {k.info.status for k in kids} == {"FINISHED"}
    versions = [
        v
        for v in client.search_model_versions(f"name = '{sc['result']['registered_model']}'")
        if v.tags.get("parent_run_id") == parent_id
    ]
    pareto = json.loads((sc["run"] / "pareto.json").read_text())["pareto"]
    assert sorted(v.tags["trial_id"] for v in versions) == sorted(p["trial_id"] for p in pareto)
