"""Shape facts of a BERT-family or GPT-2-family model, read from its Hugging Face config in one place.

The two families name the same facts differently (``num_hidden_layers``/``n_layer``,
``hidden_size``/``n_embd``, ``num_attention_heads``/``n_head``, ``intermediate_size``/``n_inner``);
:func:`model_dims` reads either spelling, so no other module needs to know both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModelDims", "model_dims"]


@dataclass(frozen=True)
class ModelDims:
    """Layer count, hidden width, heads per layer and FFN width of a transformer."""

    n_layers: int
    hidden: int
    n_heads: int
    intermediate: int

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden // n_heads``."""
        return self.hidden // self.n_heads


def _first_attr(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def model_dims(config: Any) -> ModelDims:
    """The :class:`ModelDims` of a BertConfig/GPT2Config-like object (or of a model: its ``.config``).

    ``intermediate_size``/``n_inner`` of ``None`` means ``4 * hidden`` (the GPT-2 default). Raises
    ``ValueError`` when the layer, hidden or head size is missing.
    """
    if not hasattr(config, "to_dict") and hasattr(config, "config"):
        config = config.config  # a model: read its config
    n_layers = _first_attr(config, "num_hidden_layers", "n_layer")
    hidden = _first_attr(config, "hidden_size", "n_embd")
    n_heads = _first_attr(config, "num_attention_heads", "n_head")
    if n_layers is None or hidden is None or n_heads is None:
        raise ValueError(f"config lacks layer/hidden/head sizes: {type(config).__name__}")
    intermediate = _first_attr(config, "intermediate_size", "n_inner")
    if intermediate is None:
        intermediate = 4 * int(hidden)
    return ModelDims(n_layers=int(n_layers), hidden=int(hidden), n_heads=int(n_heads), intermediate=int(intermediate))
