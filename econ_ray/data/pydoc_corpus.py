"""pydoc-corpus: a real-text corpus for causal language models, from the documentation that ships with Python.

Two sources, both on every machine that runs econ-ray (no download), both written by people for people:

- the topics of ``pydoc_data.topics``: the Python Language Reference and library reference pages that
  ``help("with")``, ``help("specialnames")``, ... print;
- the docstrings of the standard library: every public module, class, function and method of the
  modules in ``sys.stdlib_module_names`` and their subpackages (test suites, GUI toolkits, IDLE and the
  modules that print or open something on import left out).

Each document is cut into paragraphs at blank lines and each paragraph is put on one line (runs of
whitespace become one space); paragraphs under ``MIN_CHARS`` characters are dropped and each paragraph
is kept once. The rows are sorted, then shuffled with a fixed seed, so the same Python version gives the
same rows (Python 3.11.7: see ``scripts/make_pydoc_corpus.py``'s output). The rows are collected in a fresh
interpreter and cached under ``~/.cache/econ-ray`` per Python build (:func:`build`). ``builtin:pydoc-corpus``
(``econ_ray.data.builtin``) reads it directly; ``scripts/make_pydoc_corpus.py`` writes it as a ``.txt``
corpus, one paragraph per line, for any tool.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import io
import os
import pkgutil
import random
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

MIN_CHARS = 20
# whole trees left out: test suites, GUI and IDE code, installers, and modules with side effects on import
EXCLUDED = (
    "test",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "venv",
    "antigravity",
    "this",
    "pydoc_data",
    "__main__",
    "__phello__",
    "xxlimited",
    "xxsubtype",
)


def _excluded(name: str) -> bool:
    top = name.split(".")[0]
    return top in EXCLUDED or any(part.startswith("_") for part in name.split("."))


def module_names() -> list[str]:
    """The standard library's public modules and their subpackages' modules, sorted."""
    names = set()
    for top in sorted(sys.stdlib_module_names):
        if _excluded(top):
            continue
        names.add(top)
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{top}."):
                if not _excluded(info.name):
                    names.add(info.name)
    return sorted(names)


def _import(name: str):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a platform module (winreg, ...) or an optional dependency
            return None


def _docs(module) -> Iterator[str]:
    """The module's docstring and those of its own public classes, functions and methods."""
    yield inspect.getdoc(module) or ""
    if module.__name__ == "sys":  # its members are rebound at run time (pytest swaps the hooks); its doc lists them
        return
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj):
            yield inspect.getdoc(obj) or ""
            for mname, member in sorted(vars(obj).items()):
                if not mname.startswith("_") and callable(member):
                    yield inspect.cleandoc(getattr(member, "__doc__", None) or "")
        elif callable(obj):
            yield inspect.getdoc(obj) or ""


def paragraphs_of(text: str) -> list[str]:
    """``text`` cut at blank lines, each paragraph on one line; short ones dropped."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        line = re.sub(r"\s+", " ", para).strip()
        if len(line) >= MIN_CHARS:
            out.append(line)
    return out


def collect() -> list[str]:
    """Every paragraph once, sorted, as this interpreter's modules hold them (see :func:`build`)."""
    import pydoc_data.topics

    seen: set[str] = set()
    for text in pydoc_data.topics.topics.values():
        seen.update(paragraphs_of(text))
    for name in module_names():
        module = _import(name)
        if module is None:
            continue
        for doc in _docs(module):
            seen.update(paragraphs_of(doc))
    return sorted(seen)


CORPUS_VERSION = 1  # part of the cache file's name: bump when the rules above change


def cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "econ-ray"
    build_id = hashlib.sha1(f"{sys.executable} {sys.version}".encode()).hexdigest()[:12]
    return base / f"pydoc-corpus-v{CORPUS_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}-{build_id}.txt"


@lru_cache(maxsize=1)
def _paragraphs() -> tuple[str, ...]:
    """:func:`collect` run in a fresh interpreter, cached on disk per Python build: a running program
    rebinds module attributes (pytest swaps ``sys``'s hooks, test doubles replace functions), so only a
    fresh interpreter gives the same rows every time."""
    path = cache_file()
    if path.is_file():
        return tuple(path.read_text(encoding="utf-8").splitlines())
    code = "import sys; from econ_ray.data.pydoc_corpus import collect; sys.stdout.write(chr(10).join(collect()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pydoc-corpus: collecting Python's documentation failed: {proc.stderr[-500:]}")
    rows = proc.stdout.splitlines()
    write_cache(path, rows)
    return tuple(rows)


def write_cache(path: Path, rows: list[str]) -> None:
    """One paragraph per line, written to a temporary name and renamed; an unwritable cache only costs
    the next process the same work."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("\n".join(rows), encoding="utf-8")
        tmp.replace(path)


def shuffled(rows: tuple[str, ...], seed: int) -> tuple[str, ...]:
    """``rows`` (sorted, each once) shuffled with ``seed``: the order every built-in corpus is served in."""
    out = list(rows)
    random.Random(seed).shuffle(out)
    return tuple(out)


def build(seed: int = 0) -> tuple[str, ...]:
    """The corpus: every paragraph once, sorted, then shuffled with ``seed``."""
    return shuffled(_paragraphs(), seed)
