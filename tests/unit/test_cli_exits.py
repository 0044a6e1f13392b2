"""Every verb exits as documented (issue 17 point 2): bad input is one or two stderr lines and exit 2,
before any work; ``--version``; argument errors without the usage block. In-process through the
console script's entry point (``econ_ray.cli.main.main``), which is what ``econ-ray`` runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from econ_ray.cli.main import main

TINY = {
    "name": "exits",
    "model": {"name": "tiny-bert", "tiny": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32}},
    "data": {"source": "builtin:majority", "max_length": 16, "builtin": {"n_train": 20, "n_validation": 10}},
    "attention": {"mode": "gates"},
    "objective": {"kind": "penalised", "lam": 0.1, "dense_steps": 2},
    "training": {"max_steps": 2, "batch_size": 4, "eval_every": 2},
}


def _run(argv: list[str], capsys) -> tuple[int, list[str], str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own exits (errors, --version, --help)
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, [line for line in out.err.splitlines() if line.strip()], out.out


@pytest.fixture
def tiny_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


CASES = {
    "flops, zero length": (["flops", "--arch", "gpt2", "--seq-len", "0"], "--seq-len"),
    "flops, negative length": (["flops", "--arch", "gpt2", "--seq-len", "-3"], "positive int"),
    "flops, not a number": (["flops", "--arch", "gpt2", "--seq-len", "ten"], "positive int"),
    "registry best, negative budget": (["registry", "best", "m", "--max-gflops", "-1"], "--max-gflops"),
    "unknown option": (["search", "--bogus"], "unrecognized arguments"),
    "unknown verb": (["fly"], "invalid choice"),
    "no verb": ([], "required"),
    "validate a folder": (["validate", "."], "is a folder"),
    "validate a missing file": (["validate", "nope.yaml"], "file not found"),
}


@pytest.mark.parametrize("argv,needle", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_at_most_two_lines_and_exit_2(argv, needle, capsys, tiny_file):
    rc, err, out = _run(argv, capsys)
    assert rc == 2, (argv, err)
    assert 1 <= len(err) <= 2, err
    assert needle in err[0], err
    assert "usage:" not in err[0] and "Traceback" not in "\n".join(err)
    assert not (Path.cwd() / "mlflow.db").exists() and not (Path.cwd() / "runs").exists()


@pytest.mark.skipif(_cuda(), reason="a CUDA device is visible: training.device=cuda is valid here")
@pytest.mark.parametrize("verb", ["train", "validate"])
def test_cuda_device_on_a_machine_without_one_is_refused_before_work(verb, capsys, tiny_file):
    argv = [verb, str(tiny_file)] + (["--set", "training.device=cuda"] if verb == "train" else [])
    if verb == "validate":
        data = dict(TINY, training={**TINY["training"], "device": "cuda"})
        tiny_file.write_text(yaml.safe_dump(data))
    rc, err, _ = _run(argv, capsys)
    assert rc == 2 and len(err) == 1, err
    assert "training.device" in err[0] and "sees no CUDA device" in err[0]


def test_version(capsys):
    from econ_ray import __version__

    rc, _, out = _run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"econ-ray {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["registry", "list", "m"],
        ["registry", "best", "m", "--max-gflops", "1"],
        ["registry", "load", "m@rank-1", "--out", "x"],
    ],
    ids=["list", "best", "load"],
)
def test_registry_lookups_in_a_folder_without_a_store_create_nothing(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rc, err, _ = _run(argv, capsys)
    assert rc == 2 and len(err) == 1 and "no tracking store" in err[0], err
    assert list(tmp_path.iterdir()) == []
    # --tracking-uri names the store to read; a missing one is the same one-line error
    rc, err, _ = _run([*argv, "--tracking-uri", f"sqlite:///{tmp_path}/other.db"], capsys)
    assert rc == 2 and "other.db" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_out_is_a_folder_or_a_file_of_the_verbs_kind():
    from econ_ray.cli.common import out_file

    assert out_file(None, "runs", "heatmap.png") == Path("runs/heatmap.png")
    assert out_file("figs", "runs", "heatmap.png") == Path("figs/heatmap.png")
    assert out_file("figs/a.png", "runs", "heatmap.png") == Path("figs/a.png")
    assert out_file("x/c.json", "runs", "circuit_addition.json") == Path("x/c.json")
