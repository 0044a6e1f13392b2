"""Post-hoc pruning baselines and physical pruning on MiniLM-L6-H384 fine-tuned briefly on builtin:similarity."""

import json

import pytest
import torch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    from econ_ray.config import parse_config
    from econ_ray.modeling import save_model
    from econ_ray.training import train_run

    cfg = parse_config(
        {
            "model": {"name": "minilm"},
            "data": {
                "source": "builtin:similarity",
                "max_length": 32,
                "heldout_fraction": 0.2,
                "builtin": {"n_train": 1200, "n_validation": 300, "min_len": 4, "max_len": 12},
            },
            "attention": {"mode": "dense"},
            "objective": {"kind": "penalised", "lam": 0.0, "dense_steps": 0},
            "training": {
                "lr": 1e-4,
                "batch_size": 32,
                "max_steps": 150,
                "eval_every": 150,
                "seed": 0,
                "progress": False,
            },
        },
        "minilm-similarity.yaml",
    )
    res = train_run(cfg)
    p = res.prepared
    folder = save_model(
        tmp_path_factory.mktemp("minilm") / "m",
        p.model,
        p.tokenizer,
        task=p.task,
        config=cfg.model_dump(),
        summary=res.summary,
    )
    return res, folder


def test_prune_cli_on_minilm(finetuned, tmp_path, capsys):
    from econ_ray.cli.main import main

    _, folder = finetuned
    assert (
        main(["prune", str(folder), "--ratios", "0.3,0.5", "--calib-batches", "4", "--out", str(tmp_path), "--json"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    by = {(r["method"], r["ratio"]): r for r in rows}
    print("\nMiniLM post-hoc baselines (builtin:similarity, L = 32):")
    for r in rows:
        print(
            f"  {r['method']:>15} {r['ratio']:.1f}  {r['metric_name']} {r['metric']:.4f}  "
            f"{r['effective_gflops']:.4f} / {r['dense_total_gflops']:.4f} GFLOPs"
        )
    assert by[("dense", 0.0)]["metric"] > 0.5  # the fine-tuned model has learnt the task
    assert by[("heads", 0.5)]["dead_heads"] == 36  # 6 layers x 12 heads, half removed globally
    for m in ("ffn-magnitude", "ffn-activation", "heads", "topk"):
        assert (
            by[(m, 0.5)]["effective_gflops"] < by[(m, 0.3)]["effective_gflops"] < by[("dense", 0.0)]["effective_gflops"]
        )
    assert (tmp_path / "baselines.png").stat().st_size > 1000


def test_physical_pruning_of_a_masked_minilm(finetuned, tmp_path):
    from econ_ray.experiments.export import export
    from econ_ray.experiments.targets import load_target
    from econ_ray.surgery import masks, scores

    _, folder = finetuned
    t = load_target(str(folder))
    raw = masks.head_importance(t.model, t.runtime, t.calibration, t.task, batch_size=32, n_batches=4)
    heads = scores.keep_lowest_removed(scores.normalise_per_layer(raw), 0.5)
    sums, n = masks.activation_sums(t.model, t.runtime, t.calibration, batch_size=32, n_batches=4)
    neurons = scores.keep_per_layer([scores.mean_abs(s, n) for s in sums], 0.5)
    torch.set_num_threads(1)
    with masks.masked(t.runtime, heads=heads, neurons=neurons):
        rep = export(
            t.model, t.tokenizer, t.validation, t.task, seq_len=t.seq_len, out=tmp_path / "small", warmup=5, repeats=40
        )
    print("\nMiniLM, 50 % heads (Michel) + 50 % FFN neurons (activation) removed, L = 32, batch 1, 1 thread:")
    print(
        json.dumps(
            {
                k: rep[k]
                for k in (
                    "masked_metric",
                    "pruned_metric",
                    "output_abs_diff",
                    "params_dense",
                    "params_pruned",
                    "dense_total_gflops",
                    "effective_gflops",
                    "pruned_gflops",
                    "counted_pruned_gflops",
                    "latency_dense_ms",
                    "latency_pruned_ms",
                    "theoretical_speedup",
                    "structural_speedup",
                    "realised_speedup",
                )
            },
            indent=1,
        )
    )
    assert rep["equal"], rep
    assert rep["heads_kept"] == 36 and rep["neurons_kept"] == 6 * 768
    assert rep["counted_pruned_gflops"] == pytest.approx(rep["pruned_gflops"], rel=1e-9)
