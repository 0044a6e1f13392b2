#!/usr/bin/env python3
"""Build ``pydoc-topics``, a real-text classification task, from the documentation that ships with Python.

Every example is the first paragraph of the docstring of a public function, class or method of a
standard-library module; its label is the topic of the module (text, files, network, math,
concurrency, data). The text is Python's own documentation, written by people for people, and it is
on every machine that runs econ-ray (no download). Duplicate paragraphs, and paragraphs shared by
modules of different topics, are dropped; the rows are shuffled with a fixed seed, so the same
Python version writes the same file.

    python scripts/make_pydoc_topics.py OUT.csv        # columns: text, label

The CSV is a local data source: ``data.source: OUT.csv`` (econ-ray carves a validation split).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import random
import re
import sys
import warnings
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="CSV file to write (columns text, label)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    counts = {t: sum(1 for _, lab in rows if lab == t) for t in TOPICS}
    print(f"{args.out}: {len(rows)} rows from Python {sys.version.split()[0]}'s docstrings; per topic {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
