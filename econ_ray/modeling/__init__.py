"""Model building: tiny built-ins, the offline MiniLM, and Hugging Face models by name or folder."""

from econ_ray.modeling.build import ModelError, build_model, build_tokenizer, check_model, minilm_path, resolve_name

__all__ = ["ModelError", "build_model", "build_tokenizer", "check_model", "minilm_path", "resolve_name"]
from econ_ray.modeling.io import load_model, read_meta, save_model  # noqa: E402

__all__ += ["load_model", "read_meta", "save_model"]
