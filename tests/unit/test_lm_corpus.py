"""Causal LMs on a local corpus, as a user trains one offline: a byte-level BPE learnt from the training text,
text packed into blocks with end-of-text separators, a cosine schedule and gradient clipping, and the
real-text corpus from Python's own documentation (builtin:pydoc-corpus)."""

import math

import pytest
import torch
from transformers import AutoTokenizer

from econ_ray.config import parse_config
from econ_ray.config.load import ConfigError
from econ_ray.data import TaskSpec, build_bpe_tokenizer, encode_split
from econ_ray.data.encode import pack_lm
from econ_ray.training.engine import TorchEngine, lr_schedule, warmup_cosine

TEXTS = [
    "Return the number of items in a container.",
    "Open the file and return a stream; raise OSError upon failure.",
    "The with statement wraps the execution of a block with methods defined by a context manager.",
    "Return a new sorted list from the items in iterable.",
] * 20


def test_bpe_learns_from_the_text_saves_and_loads_as_a_stock_tokenizer(tmp_path):
    tok = build_bpe_tokenizer(TEXTS, vocab_size=400)
    assert 257 < len(tok) <= 400
    assert tok.eos_token == tok.bos_token == tok.pad_token == "<|endoftext|>" and tok.eos_token_id == 0
    text = "Return the items of the container."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text.encode()) / 2  # merges learnt: fewer tokens than bytes
    assert tok.decode(ids) == text
    unseen = "naïve café ∑ 日本"  # byte level: nothing is unknown
    assert tok.decode(tok(unseen, add_special_tokens=False)["input_ids"]) == unseen
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text, add_special_tokens=False)["input_ids"] == ids and loaded.eos_token_id == 0
    again = build_bpe_tokenizer(TEXTS, vocab_size=400)
    assert again.get_vocab() == tok.get_vocab()  # deterministic


def test_bpe_refuses_a_vocabulary_smaller_than_its_bytes():
    with pytest.raises(ValueError, match="model.vocab_size"):
        build_bpe_tokenizer(TEXTS, vocab_size=200)


def test_packing_joins_texts_with_end_of_text_into_full_blocks():
    tok = build_bpe_tokenizer(TEXTS, vocab_size=400)
    examples = [{"text": t} for t in TEXTS[:4]]
    pieces = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS[:4]]
    stream = [i for p in pieces for i in (*p, 0)]
    enc = pack_lm(examples, tok, 16)
    assert enc.input_ids.shape == (len(stream) // 16, 16)
    assert enc.input_ids.flatten().tolist() == stream[: enc.input_ids.numel()]  # nothing padded, nothing reordered
    assert bool(enc.attention_mask.all()) and torch.equal(enc.labels, enc.input_ids)
    task = TaskSpec("corpus.txt", "lm", 0, "perplexity")
    assert torch.equal(encode_split(examples, task, tok, 16, packing=True).input_ids, enc.input_ids)
    unpacked = encode_split(examples, task, tok, 16)  # one padded row per text, as before
    assert unpacked.input_ids.shape[0] == 4 and not bool(unpacked.attention_mask.all())
    from econ_ray.data import DataError

    with pytest.raises(DataError, match="data.packing"):
        encode_split(examples[:1], task, tok, 4096, packing=True)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    f = warmup_cosine(100, 0.1)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0, abs=1e-12)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))
    assert f(30) == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 90)))
    assert lr_schedule("linear", 100, 0.1)(55) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="training.schedule"):
        lr_schedule("step", 100, 0.1)


def test_gradient_clipping_bounds_the_update_norm():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8)
    eng = TorchEngine(model, lr=1.0, gate_lr=None, weight_decay=0.0, total_steps=10, warmup_ratio=0.0, grad_clip=0.5)
    (model(torch.randn(4, 8)) * 1000).sum().backward()
    seen = []
    step = eng.optimizer.step

    def look(*args, **kwargs):  # the gradients the update uses
        seen.append(float(torch.sqrt(sum(p.grad.norm() ** 2 for p in model.parameters()))))
        return step(*args, **kwargs)

    eng.optimizer.step = look
    eng.step()
    assert seen == [pytest.approx(0.5, rel=1e-5)]


def test_deepspeed_clips_by_the_same_setting():
    from econ_ray.config.schema import DistributedConfig, TrainingConfig
    from econ_ray.training.deepspeed_engine import deepspeed_config

    dist = DistributedConfig()
    assert deepspeed_config(dist, TrainingConfig(grad_clip=1.0), cuda=False)["gradient_clipping"] == 1.0
    assert deepspeed_config(dist, TrainingConfig(), cuda=False)["gradient_clipping"] == 0.0


def test_bpe_is_for_the_tiny_models_only():
    with pytest.raises(ConfigError, match="model.tokenizer"):
        parse_config({"model": {"name": "gpt2", "tokenizer": "bpe"}}, "bad.yaml")
    cfg = parse_config({"model": {"name": "tiny-gpt2", "tokenizer": "bpe", "vocab_size": 1024}}, "ok.yaml")
    assert cfg.model.vocab_size == 1024


def test_an_lm_trained_on_a_packed_local_corpus_never_trains_on_held_out_text(tmp_path):
    from econ_ray.training.loop import prepare

    lines = [f"paragraph {i}: " + TEXTS[i % 4] for i in range(200)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines))
    cfg = parse_config(
        {
            "model": {"name": "tiny-gpt2", "tokenizer": "bpe", "vocab_size": 300},
            "data": {"source": str(tmp_path / "corpus.txt"), "max_length": 32, "packing": True},
        },
        "lm.yaml",
    )
    p = prepare(cfg)
    assert len(p.tokenizer) <= 300
    train = p.tokenizer.decode(p.train.input_ids.flatten().tolist())
    for split in (p.validation, p.heldout):
        text = p.tokenizer.decode(split.input_ids.flatten().tolist())
        numbers = {w for w in text.replace(":", " ").split() if w.isdigit()}
        assert numbers and not any(f"paragraph {n}:" in train for n in numbers)


def test_pydoc_corpus_is_real_text_from_python_itself(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from econ_ray.data.builtin import generate
    from econ_ray.data.pydoc_corpus import MIN_CHARS, build

    rows = build(0)
    # the same rows as any fresh interpreter collects, whatever this process (pytest) has rebound
    code = "import json; from econ_ray.data.pydoc_corpus import collect; print(json.dumps(collect()))"
    fresh = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
    assert sorted(rows) == fresh
    assert build(1) != rows and sorted(build(1)) == fresh  # the seed only shuffles
    assert len(rows) > 5000 and len(set(rows)) == len(rows)
    assert all(len(r) >= MIN_CHARS and "\n" not in r for r in rows)
    assert any("context manager" in r for r in rows)  # the with statement's reference topic
    train, val = generate("pydoc-corpus", 0, {"n_train": 50, "n_validation": 10})
    assert [r["text"] for r in val] == list(rows[:10]) and [r["text"] for r in train] == list(rows[10:60])

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_pydoc_corpus.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "c.txt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "c.txt").read_text().splitlines() == list(rows)
