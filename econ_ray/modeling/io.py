"""Save and load a trained econ-ray model as a plain folder.

Layout of a saved model folder::

    model/            save_pretrained of the Hugging Face model and its tokenizer (loadable by plain
                      transformers; the gate biases are extra keys it ignores)
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
    model: nn.Module = loader.from_pretrained(folder / "model")
    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
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
