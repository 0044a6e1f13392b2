"""Save and load a trained econ-ray model as a plain folder.

Layout of a saved model folder::

    model/            save_pretrained of the Hugging Face model and its tokenizer; a model whose attention
                      is not dense (gates, top-k, budget) has ``model_type`` ``econ_gated_<family>`` there,
                      so plain transformers refuses it rather than load it silently as stock attention
                      over every edge (``econ-ray export`` makes the plain-transformers model)
    econ_gates.safetensors   the gate biases, one (H,) tensor per layer
    econ_masks.safetensors   structural masks, if any (``heads.<layer>`` (H,), ``neurons.<layer>`` (I,);
                      0 = removed): a targeted cut or a pruning baseline
    econ.json         attention mode and options, FFN activation, task, the run config and its summary

``load_model(folder)`` rebuilds the model with econ-ray attention installed in the saved mode, so
it reproduces the logged metric on the same evaluation data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from econ_ray.attention.runtime import EconRuntime, install
from econ_ray.data import TaskSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel

META_FILE = "econ.json"
GATES_FILE = "econ_gates.safetensors"
MASKS_FILE = "econ_masks.safetensors"


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def save_model(
    folder: str | Path,
    model: nn.Module,
    tokenizer: Any,
    *,
    task: TaskSpec,
    config: dict[str, Any],
    summary: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (with econ-ray attention installed), its tokenizer and metadata to ``folder``."""
    folder = Path(folder)
    (folder / "model").mkdir(parents=True, exist_ok=True)
    # install() sets model.econ_runtime; nn.Module types unknown attributes as Tensor | Module
    rt = cast(EconRuntime, model.econ_runtime)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("econ_gate_bias")}
    gates = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.endswith("econ_gate_bias")}
    # the models econ-ray builds are Hugging Face models (modeling.build_model)
    cast("PreTrainedModel", model).save_pretrained(folder / "model", state_dict=state)
    tokenizer.save_pretrained(folder / "model")
    save_file(gates, str(folder / GATES_FILE))
    if rt.mode != "dense":
        _mark_gated(folder / "model" / "config.json", rt.mode)
    masks = {f"heads.{i}": m.detach().float().cpu().contiguous() for i, m in rt.head_masks.items() if m.dim() == 1}
    masks.update({f"neurons.{i}": m.detach().float().cpu().contiguous() for i, m in rt.neuron_masks.items()})
    if masks:
        save_file(masks, str(folder / MASKS_FILE))
    att = config.get("attention", {})
    meta = {
        "attention": {
            "mode": rt.mode,
            "k": rt.k,
            "budget": rt.budget,
            "keep_strongest": rt.keep_strongest,
            "gate_bias_init": att.get("gate_bias_init", 3.0),
        },
        "ffn_activation": config.get("model", {}).get("ffn_activation", "keep"),
        "task": {"name": task.name, "kind": task.kind, "num_labels": task.num_labels, "metric_name": task.metric_name},
        "config": config,
        "summary": summary or {},
    }
    (folder / META_FILE).write_text(json.dumps(_plain(meta), indent=2, sort_keys=True))
    return folder


BASE_TYPE_KEY = "econ_ray_base_model_type"


def _mark_gated(config_file: Path, mode: str) -> None:
    conf = json.loads(config_file.read_text())
    base = conf["model_type"]
    conf[BASE_TYPE_KEY] = base
    conf["model_type"] = f"econ_gated_{base}"
    conf["econ_ray"] = (
        f"this model computes attention with econ-ray's {mode} attention, which stock {base} attention does not: "
        "load the folder above this one with econ_ray.load_model, or make a model plain transformers runs the "
        "same way with `econ-ray export`"
    )
    config_file.write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")


def _hf_config(model_folder: Path) -> Any:
    """The Hugging Face config of a saved ``model/`` folder, with its stock model type restored where
    :func:`_mark_gated` renamed it."""
    from transformers import AutoConfig

    conf = json.loads((model_folder / "config.json").read_text())
    base = conf.pop(BASE_TYPE_KEY, None)
    if base is None:
        return AutoConfig.from_pretrained(model_folder)
    conf.pop("econ_ray", None)
    conf.pop("model_type", None)
    return AutoConfig.for_model(base, **conf)


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not an econ-ray model folder (no {META_FILE})")
    return json.loads(path.read_text())


def load_model(folder: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model in eval mode with econ-ray attention installed, tokenizer, metadata) from a saved folder."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    meta = read_meta(folder)
    loader = AutoModelForCausalLM if meta["task"]["kind"] == "lm" else AutoModelForSequenceClassification
    # typed as the nn.Module it is returned as (PreTrainedModel.to is typed for a model argument)
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    # a gated folder's renamed model type is ours, not a mismatch to warn of (the tokenizer reads the config
    # too); a local folder's weights load in well under a second, so no progress bar either
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model: nn.Module = loader.from_pretrained(folder / "model", config=_hf_config(folder / "model"))
        tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    a = meta["attention"]
    # the saved config already says relu if the activation was swapped; keep it as saved
    install(
        model,
        mode=a["mode"],
        k=a["k"],
        budget=a["budget"],
        keep_strongest=a["keep_strongest"],
        gate_bias_init=a.get("gate_bias_init", 3.0),
        ffn_activation="keep",
    )
    gates = load_file(str(folder / GATES_FILE))
    missing = model.load_state_dict(gates, strict=False)
    if missing.unexpected_keys:
        raise ValueError(f"{folder}: gate tensors do not match the model: {missing.unexpected_keys[:3]}")
    rt = cast(EconRuntime, model.econ_runtime)
    if (folder / MASKS_FILE).is_file():
        for key, mask in load_file(str(folder / MASKS_FILE)).items():
            kind, layer = key.split(".")
            (rt.head_masks if kind == "heads" else rt.neuron_masks)[int(layer)] = mask.to(device)
    model.to(device).eval()
    return model, tokenizer, meta
