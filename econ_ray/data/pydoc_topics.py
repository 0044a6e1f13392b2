"""pydoc-topics: a real-text classification task built from the documentation that ships with Python.

Every example is the first paragraph of the docstring of a public function, class or method of a
standard-library module; its label is the topic of the module (text, files, network, math,
concurrency, data). The text is Python's own documentation, written by people for people, and it is
on every machine that runs econ-ray (no download). Duplicate paragraphs, and paragraphs shared by
modules of different topics, are dropped; the rows are shuffled with a fixed seed, so the same
Python version gives the same rows (Python 3.11.7: 1523).

``builtin:pydoc-topics`` (``econ_ray.data.builtin``) reads it directly; ``scripts/make_pydoc_topics.py``
writes it as a CSV (``text``, ``label``) for any tool.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import sys
import warnings
from functools import lru_cache

TOPICS: dict[str, tuple[str, ...]] = {
    "text": (
        "string",
        "re",
        "textwrap",
        "difflib",
        "unicodedata",
        "codecs",
        "html",
        "html.parser",
        "locale",
        "gettext",
        "shlex",
        "tokenize",
        "string.templatelib" if sys.version_info >= (3, 14) else "stringprep",
        "email.header",
        "quopri",
        "base64",
    ),
    "files": (
        "os",
        "os.path",
        "shutil",
        "pathlib",
        "glob",
        "fnmatch",
        "tempfile",
        "filecmp",
        "io",
        "zipfile",
        "tarfile",
        "gzip",
        "stat",
        "lzma",
        "bz2",
        "zlib",
        "fileinput",
        "linecache",
        "mmap",
    ),
    "network": (
        "socket",
        "ssl",
        "http.client",
        "http.server",
        "http.cookies",
        "urllib.request",
        "urllib.parse",
        "email.message",
        "email.utils",
        "smtplib",
        "ftplib",
        "ipaddress",
        "imaplib",
        "poplib",
    ),
    "math": ("math", "cmath", "statistics", "decimal", "fractions", "random", "numbers", "operator"),
    "concurrency": (
        "threading",
        "multiprocessing",
        "multiprocessing.pool",
        "asyncio",
        "concurrent.futures",
        "queue",
        "subprocess",
        "sched",
        "signal",
        "selectors",
        "asyncio.tasks",
        "asyncio.events",
        "asyncio.locks",
        "asyncio.queues",
        "asyncio.streams",
        "asyncio.futures",
        "asyncio.base_events",
        "multiprocessing.process",
        "multiprocessing.managers",
        "multiprocessing.synchronize",
        "contextvars",
    ),
    "data": (
        "json",
        "csv",
        "pickle",
        "sqlite3",
        "xml.etree.ElementTree",
        "collections",
        "heapq",
        "bisect",
        "array",
        "struct",
        "datetime",
        "calendar",
        "configparser",
        "shelve",
    ),
}
MIN_CHARS = 25


def first_paragraph(doc: str | None) -> str | None:
    """The docstring's first paragraph on one line, or None when it is too short or only a signature."""
    if not doc:
        return None
    para = inspect.cleandoc(doc).split("\n\n", 1)[0]
    text = re.sub(r"\s+", " ", para).strip()
    if len(text) < MIN_CHARS or re.fullmatch(r"[\w.]+\(.*\)(\s*->.*)?", text):
        return None
    return text


def docstrings(module_name: str) -> list[str]:
    """First paragraphs of the module's public functions, classes and their methods."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(module_name)
    out = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", module_name) not in (module_name, None):
            continue
        if inspect.isclass(obj):
            out.append(first_paragraph(obj.__doc__))
            for mname, member in sorted(vars(obj).items()):
                if not mname.startswith("_") and callable(member):
                    out.append(first_paragraph(getattr(member, "__doc__", None)))
        elif callable(obj):
            out.append(first_paragraph(obj.__doc__))
    return [t for t in out if t]


@lru_cache(maxsize=4)
def build(seed: int = 0) -> list[tuple[str, str]]:
    """(text, topic) rows, each paragraph once, shuffled."""
    seen: dict[str, set[str]] = {}
    for topic, modules in TOPICS.items():
        for m in modules:
            for text in docstrings(m):
                seen.setdefault(text, set()).add(topic)
    rows = [(text, next(iter(topics))) for text, topics in sorted(seen.items()) if len(topics) == 1]
    random.Random(seed).shuffle(rows)
    return rows


LABELS: tuple[str, ...] = tuple(TOPICS)
