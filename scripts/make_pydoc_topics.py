#!/usr/bin/env python3
"""Write ``pydoc-topics`` (econ_ray.data.pydoc_topics: Python's own docstrings -> the module's topic) as a CSV.

    python scripts/make_pydoc_topics.py OUT.csv        # columns: text, label

The CSV is a local data source (``data.source: OUT.csv``; econ-ray carves a validation split); the same
rows are ``data.source: builtin:pydoc-topics``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from econ_ray.data.pydoc_topics import TOPICS, build


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
