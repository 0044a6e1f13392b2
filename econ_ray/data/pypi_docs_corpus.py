"""pypi-docs-corpus: a larger real-text corpus for causal LMs, from the docstrings the installed PyPI
packages ship (numpy, SciPy, pandas, scikit-learn, PyTorch, Transformers, Ray, MLflow, ...).

``pydoc-corpus`` (Python's own documentation) is about 300 k BPE tokens: a 4-layer GPT-2 trained on it
for 30 minutes here reads it 24 times and memorises it (docs/results.md section 5). This corpus is
about 30 times larger. The text is the docstrings of every module, class and function of
:data:`PACKAGES` that is installed, read from the source files with :mod:`ast` (nothing is imported, so
nothing runs), test folders left out; each docstring is cut into paragraphs at blank lines, each
paragraph put on one line (runs of whitespace become one space), paragraphs under ``MIN_CHARS``
characters dropped and each paragraph kept once. The rows are sorted, then shuffled with a fixed seed;
the same package versions give the same rows (the pinned versions ``make install`` installs; the cache
file under ``~/.cache/econ-ray`` is named by them). ``scripts/make_pydoc_corpus.py --source pypi-docs``
writes it as a .txt corpus.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from econ_ray.data.pydoc_corpus import paragraphs_of, shuffled, write_cache

# (import name, distribution name): the documented packages, in this order
PACKAGES = (
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("pandas", "pandas"),
    ("sklearn", "scikit-learn"),
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("tokenizers", "tokenizers"),
    ("ray", "ray"),
    ("mlflow", "mlflow"),
    ("optuna", "optuna"),
    ("deepspeed", "deepspeed"),
    ("pydantic", "pydantic"),
    ("matplotlib", "matplotlib"),
)
SKIPPED_DIRS = {"tests", "test", "testing", "_vendor", "vendored", "thirdparty", "third_party"}
CORPUS_VERSION = 1  # part of the cache file's name: bump when the rules here change


def installed() -> list[tuple[str, str, Path]]:
    """(import name, version, source folder) of each package of :data:`PACKAGES` that is installed."""
    out = []
    for name, dist in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        out.append((name, version, Path(next(iter(spec.submodule_search_locations)))))
    return out


def docstrings_of(source: str) -> list[str]:
    """The docstrings of a module's source: the module's and every public class's and function's (at
    any depth); a name starting with ``_`` is private unless it is a dunder like ``__init__``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module):
            public = True
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            public = not node.name.startswith("_") or (node.name.startswith("__") and node.name.endswith("__"))
        else:
            continue
        doc = ast.get_docstring(node) if public else None
        if doc:
            docs.append(doc)
    return docs


def package_paragraphs(folder: Path) -> set[str]:
    """Every paragraph of the docstrings in the ``.py`` files under ``folder`` (test folders left out)."""
    seen: set[str] = set()
    for path in sorted(folder.rglob("*.py")):
        if SKIPPED_DIRS & set(path.relative_to(folder).parts[:-1]):
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for doc in docstrings_of(source):
            seen.update(paragraphs_of(doc))
    return seen


def collect() -> list[str]:
    """Every paragraph once, sorted (see the module docstring)."""
    seen: set[str] = set()
    for _, _, folder in installed():
        seen |= package_paragraphs(folder)
    return sorted(seen)


def cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "econ-ray"
    versions = " ".join(f"{n}=={v}" for n, v, _ in installed())
    key = hashlib.sha1(f"{CORPUS_VERSION} {versions}".encode()).hexdigest()[:12]
    return base / f"pypi-docs-corpus-v{CORPUS_VERSION}-{key}.txt"


@lru_cache(maxsize=1)
def _paragraphs() -> tuple[str, ...]:
    path = cache_file()
    if path.is_file():
        return tuple(path.read_text(encoding="utf-8").splitlines())
    rows = collect()
    if not rows:
        raise RuntimeError(f"pypi-docs-corpus: none of {', '.join(d for _, d in PACKAGES)} is installed")
    write_cache(path, rows)
    return tuple(rows)


def build(seed: int = 0) -> tuple[str, ...]:
    """The corpus: every paragraph once, sorted, then shuffled with ``seed``."""
    return shuffled(_paragraphs(), seed)
