"""Built-in generated tasks: small, offline and deterministic given a seed.

Every example is text of whitespace-separated tokens, so the word-level tokenizer
(``econ_ray.data.tokenizer``) covers it exactly and tiny models can learn it in seconds.

- ``majority`` (classification, 2 labels): 8..24 letters from ``a``..``h``; label 1 when the
  sequence holds more ``a`` than ``b``, else 0. Ties are resampled (they would make the label
  depend on the tie-break rule rather than on counting) and labels alternate before a final
  shuffle, so the classes are exactly balanced. Option ``noise_pct`` flips that share of labels
  (seeded), which puts a floor under the cross-entropy so a relative loss ceiling is meaningful.
- ``addition`` (language modelling): ``"1 2 + 3 4 = 4 6"``. Operands ``a``, ``b`` are uniform in
  ``0..max_operand`` (99), the answer is ``a + b``; every number is written in decimal without
  leading zeros, one digit per token (``7 + 3 5 = 4 2``). Operand pairs are drawn without
  replacement, so no validation sum appears in training.
- ``similarity`` (regression, 0..5 like STS-B): two sequences of 2..8 letters from ``a``..``h``;
  label = 5 x Jaccard similarity of their token sets.
- ``pydoc-topics`` (classification, 6 labels): real text, not generated: the first paragraph of a
  standard-library docstring -> its module's topic (``econ_ray.data.pydoc_topics``). The rows are
  fixed by the Python version; ``n_validation`` rows (the first, in the fixed shuffle) validate and
  up to ``n_train`` of the rest train (the seed does not change them).
- ``pydoc-pairs`` (classification, 2 labels, sentence pairs): real text, not generated: does sentence B
  follow sentence A in the same standard-library docstring or reference page (``next``), or come from
  another module's (``other``)? (``econ_ray.data.pydoc_pairs``; whole documents are split, about 6 300
  training and 1 050 validation pairs on Python 3.11; the seed does not change them.)
- ``pydoc-corpus`` (language modelling): real text, not generated: the paragraphs of Python's own
  reference topics and standard-library docstrings (``econ_ray.data.pydoc_corpus``), one example each
  (``data.packing`` joins them into blocks); split like ``pydoc-topics``.
- ``pypi-docs-corpus`` (language modelling): real text, not generated: the docstring paragraphs of the
  installed PyPI packages econ-ray depends on (numpy, SciPy, pandas, scikit-learn, PyTorch, Transformers,
  Ray, MLflow, ...; ``econ_ray.data.pypi_docs_corpus``), about 30 times ``pydoc-corpus``; split like it.

This module has no dependency on the rest of the package; invalid options raise ``ValueError``,
which ``econ_ray.data.sources`` reports as a ``DataError`` naming the source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

LETTERS = tuple("abcdefgh")

Example = dict[str, Any]
Generator = Callable[[np.random.Generator, int, dict[str, int]], list[Example]]

# Independent random streams per split, so changing n_validation never changes the training set.
_TRAIN_STREAM, _VALIDATION_STREAM = 0, 1


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _letters(rng: np.random.Generator, min_len: int, max_len: int) -> list[str]:
    n = int(rng.integers(min_len, max_len + 1))
    return [LETTERS[i] for i in rng.integers(0, len(LETTERS), size=n)]


def majority_examples(rng: np.random.Generator, n: int, opts: dict[str, int]) -> list[Example]:
    """``n`` majority examples, exactly balanced (labels alternate, then the list is shuffled)."""
    out: list[Example] = []
    for i in range(n):
        want = i % 2
        while True:  # rejection sampling: about 1 draw in 5 is a tie, half of the rest match
            toks = _letters(rng, opts["min_len"], opts["max_len"])
            a, b = toks.count("a"), toks.count("b")
            if a != b and int(a > b) == want:
                break
        out.append({"text": " ".join(toks), "text_pair": None, "label": want})
    flips = rng.random(n) < opts.get("noise_pct", 0) / 100.0
    for ex, flip in zip(out, flips):
        if flip:
            ex["label"] = 1 - ex["label"]
    order = rng.permutation(n)
    return [out[i] for i in order]


def _digits(x: int) -> str:
    return " ".join(str(x))


def addition_text(a: int, b: int) -> str:
    """The canonical text of one addition example, e.g. ``addition_text(12, 34) == "1 2 + 3 4 = 4 6"``."""
    return f"{_digits(a)} + {_digits(b)} = {_digits(a + b)}"


def _addition_pairs(seed: int, max_operand: int) -> np.ndarray:
    """All operand pairs in a seeded order; train takes a prefix, validation the next block."""
    side = max_operand + 1
    return _rng(seed, _TRAIN_STREAM).permutation(side * side)


def similarity_examples(rng: np.random.Generator, n: int, opts: dict[str, int]) -> list[Example]:
    """``n`` pairs of letter sequences labelled 5 x Jaccard(set(text), set(text_pair))."""
    out: list[Example] = []
    for _ in range(n):
        x = _letters(rng, opts["min_len"], opts["max_len"])
        y = _letters(rng, opts["min_len"], opts["max_len"])
        sx, sy = set(x), set(y)
        out.append({"text": " ".join(x), "text_pair": " ".join(y), "label": 5.0 * len(sx & sy) / len(sx | sy)})
    return out


@dataclass(frozen=True)
class BuiltinTask:
    """One generated task: its kind/metric and the options its generator takes (with defaults)."""

    kind: str
    num_labels: int
    metric_name: str
    defaults: Mapping[str, int]

    def options(self, given: Mapping[str, Any] | None) -> dict[str, int]:
        """Defaults overridden by ``given``; integral floats are accepted (configs may parse 10.0)."""
        opts = dict(self.defaults)
        for key, value in (given or {}).items():
            if key not in opts:
                raise ValueError(f"unknown builtin option '{key}' (options: {', '.join(sorted(opts))})")
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError(f"builtin option '{key}' must be an integer (got {value!r})")
            opts[key] = int(value)
        for key in ("n_train", "n_validation"):
            if opts[key] < 1:
                raise ValueError(f"builtin option '{key}' must be >= 1 (got {opts[key]})")
        if "min_len" in opts and not 1 <= opts["min_len"] <= opts["max_len"]:
            raise ValueError(f"builtin options need 1 <= min_len <= max_len (got {opts['min_len']}, {opts['max_len']})")
        return opts


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "majority": BuiltinTask(
        "classification",
        2,
        "accuracy",
        {"n_train": 2000, "n_validation": 500, "min_len": 8, "max_len": 24, "noise_pct": 0},
    ),
    "addition": BuiltinTask("lm", 0, "perplexity", {"n_train": 4000, "n_validation": 500, "max_operand": 99}),
    "similarity": BuiltinTask(
        "regression", 1, "pearson", {"n_train": 2000, "n_validation": 500, "min_len": 2, "max_len": 8}
    ),
    "pydoc-topics": BuiltinTask("classification", 6, "accuracy", {"n_train": 100000, "n_validation": 300}),
    "pydoc-pairs": BuiltinTask("classification", 2, "accuracy", {"n_train": 100000, "n_validation": 1000}),
    "pydoc-corpus": BuiltinTask("lm", 0, "perplexity", {"n_train": 100000, "n_validation": 1000}),
    "pypi-docs-corpus": BuiltinTask("lm", 0, "perplexity", {"n_train": 10_000_000, "n_validation": 2000}),
}


def _pair_rows(rows: list[tuple[str, str, int, int]]) -> list[Example]:
    return [{"text": a, "text_pair": b, "label": label, "group": group} for a, b, label, group in rows]


def generate(name: str, seed: int, options: Mapping[str, Any] | None = None) -> tuple[list[Example], list[Example]]:
    """(train, validation) examples of built-in task ``name`` (without the ``builtin:`` prefix)."""
    if name not in BUILTIN_TASKS:
        raise ValueError(f"unknown builtin task '{name}' (builtins: {', '.join(BUILTIN_TASKS)})")
    opts = BUILTIN_TASKS[name].options(options)
    n_train, n_val = opts["n_train"], opts["n_validation"]
    if name == "pydoc-topics":
        from econ_ray.data.pydoc_topics import LABELS, build

        rows = [{"text": text, "label": LABELS.index(topic)} for text, topic in build()]
        if n_val >= len(rows):
            raise ValueError(f"n_validation = {n_val} leaves no training rows of the {len(rows)} pydoc-topics rows")
        return rows[n_val : n_val + n_train], rows[:n_val]
    if name == "pydoc-pairs":
        from econ_ray.data.pydoc_pairs import build as build_pairs

        train, validation = build_pairs(n_validation=n_val)
        if not train:
            raise ValueError(f"n_validation = {n_val} leaves no training rows of the pydoc-pairs documents")
        return _pair_rows(train[:n_train]), _pair_rows(validation)
    if name in ("pydoc-corpus", "pypi-docs-corpus"):
        if name == "pydoc-corpus":
            from econ_ray.data.pydoc_corpus import build as build_corpus
        else:
            from econ_ray.data.pypi_docs_corpus import build as build_corpus

        paras = [{"text": text} for text in build_corpus()]
        if n_val >= len(paras):
            raise ValueError(f"n_validation = {n_val} leaves no training rows of the {len(paras)} {name} rows")
        return paras[n_val : n_val + n_train], paras[:n_val]
    if name == "addition":
        max_operand = opts["max_operand"]
        if max_operand < 1:
            raise ValueError(f"builtin option 'max_operand' must be >= 1 (got {max_operand})")
        side = max_operand + 1
        if n_train + n_val > side * side:
            raise ValueError(
                f"n_train + n_validation = {n_train + n_val} exceeds the {side * side} distinct operand pairs "
                f"of max_operand={max_operand}"
            )
        codes = _addition_pairs(seed, max_operand)
        texts = [{"text": addition_text(int(c) // side, int(c) % side)} for c in codes[: n_train + n_val]]
        return texts[:n_train], texts[n_train:]
    make: Generator = majority_examples if name == "majority" else similarity_examples
    return make(_rng(seed, _TRAIN_STREAM), n_train, opts), make(_rng(seed, _VALIDATION_STREAM), n_val, opts)
