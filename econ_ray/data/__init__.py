"""Task data: built-in generated tasks, Hugging Face hub datasets and local files, a word-level
tokenizer for the tiny models, and fixed-length tensor encoding."""

from econ_ray.data.builtin import BUILTIN_TASKS, addition_text
from econ_ray.data.encode import EncodedSplit, encode_split
from econ_ray.data.sources import (
    HUB_TASKS,
    DataError,
    TaskKind,
    TaskSpec,
    TextSplits,
    check_source,
    describe_source,
    load_task,
    load_task_for,
)
from econ_ray.data.tokenizer import SPECIAL_TOKENS, build_bpe_tokenizer, build_word_tokenizer, word_vocabulary

__all__ = [
    "BUILTIN_TASKS",
    "HUB_TASKS",
    "SPECIAL_TOKENS",
    "DataError",
    "EncodedSplit",
    "TaskKind",
    "TaskSpec",
    "TextSplits",
    "addition_text",
    "build_bpe_tokenizer",
    "build_word_tokenizer",
    "check_source",
    "describe_source",
    "encode_split",
    "load_task",
    "load_task_for",
    "word_vocabulary",
]
