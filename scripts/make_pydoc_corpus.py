#!/usr/bin/env python3
"""Write ``pydoc-corpus`` (econ_ray.data.pydoc_corpus: Python's reference topics and docstrings) or, with
``--source pypi-docs``, ``pypi-docs-corpus`` (econ_ray.data.pypi_docs_corpus: the docstrings of the installed
PyPI packages econ-ray depends on) as a .txt corpus.

    python scripts/make_pydoc_corpus.py OUT.txt                      # one paragraph per line
    python scripts/make_pydoc_corpus.py OUT.txt --source pypi-docs

The file is a local language-modelling source (``data.source: OUT.txt``; econ-ray carves validation and
held-out lines); the same rows are ``data.source: builtin:pydoc-corpus`` (``builtin:pypi-docs-corpus``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help=".txt file to write (one paragraph per line)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", choices=["pydoc", "pypi-docs"], default="pydoc", help="which corpus (default pydoc)")
    args = ap.parse_args(argv)
    if args.source == "pydoc":
        from econ_ray.data.pydoc_corpus import build

        origin = f"Python {sys.version.split()[0]}'s reference topics and standard-library docstrings"
    else:
        from econ_ray.data.pypi_docs_corpus import build, installed

        origin = "the docstrings of " + ", ".join(f"{n} {v}" for n, v, _ in installed())
    rows = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    words = sum(len(r.split()) for r in rows)
    print(f"{args.out}: {len(rows)} paragraphs, {words} words, {sum(map(len, rows))} characters from {origin}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
