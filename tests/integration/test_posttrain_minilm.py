"""`econ-ray posttrain` on the pretrained MiniLM (offline) and the real-text pair task pydoc-pairs: a short
run of search_spaces/minilm_pydoc_pairs_posttrain.yaml with the paired drive reference (issue 18). The
full-length numbers are docs/results.md section 5c's; this checks the path end to end on a real encoder."""

import json

import pytest

from econ_ray.cli.main import main

pytestmark = pytest.mark.integration


def test_posttrain_minilm_on_real_text_pairs(tmp_path, capsys):
    sets = {
        "objective.dense_steps": 40,
        "objective.drive_reference": "paired",
        "training.max_steps": 30,
        "training.eval_every": 15,
        "training.batch_size": 16,
        "data.train_size": 1200,
        "data.eval_size": 256,
    }
    argv = ["posttrain", "search_spaces/minilm_pydoc_pairs_posttrain.yaml", "--eps", "0.05", "--out", str(tmp_path)]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    assert main([*argv, "--json", "--save-models"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["causal"] is False and out["metric_name"] == "accuracy" and out["model"] == "minilm"
    dense = out["rows"][0]
    assert dense["kept_fraction"] == pytest.approx(1.0) and 0.0 <= dense["metric"] <= 1.0
    (gated,) = [r for r in out["rows"] if r["method"] == "gates"]
    assert gated["steps"] == 30 and gated["tau"] == pytest.approx(1.05 * out["ce_dense_heldout"], rel=1e-6)
    # certified on rows the multiplier never read, or the row says why
    if gated["feasible"]:
        assert gated["ce_certified"] <= gated["tau"] and gated["ce"] <= gated["tau"]
    else:
        assert gated["infeasible_reason"]
    traj = out["trajectories"]["0.05"]
    assert len(traj["steps"]) == 30 and all(s["constraint_tau"] > 0 for s in traj["steps"])
    # the matched top-k and budget rows and the continued dense control are on the same table
    assert {r["method"] for r in out["rows"]} >= {"dense", "gates", "dense_continued", "budget", "topk"}
    assert (tmp_path / "models" / "gates_eps0.05").is_dir()
