#!/usr/bin/env python3
"""Write ``pydoc-pairs`` (econ_ray.data.pydoc_pairs: does sentence B follow sentence A in Python's own
documentation?) as GLUE-layout TSV files.

    python scripts/make_pydoc_pairs.py OUT_DIR        # OUT_DIR/train.tsv, OUT_DIR/dev.tsv

Columns: sentence1, sentence2, label (1 = next, 0 = other), document. The files are a local data source
(``data.source: OUT_DIR/train.tsv``, ``data.validation: OUT_DIR/dev.tsv``,
``data.columns: {text: sentence1, text_pair: sentence2, label: label}``); the same rows are
``data.source: builtin:pydoc-pairs``, which also carves its held-out split by document (the ``document``
column), where a local file's held-out split is carved by row.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from econ_ray.data.pydoc_pairs import build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write train.tsv and dev.tsv into")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    train, dev = build(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        with open(args.out / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["sentence1", "sentence2", "label", "document"])
            w.writerows(rows)
    print(
        f"{args.out}: train.tsv {len(train)} pairs, dev.tsv {len(dev)} pairs from Python "
        f"{sys.version.split()[0]}'s documentation ({sum(r[2] for r in train)} / {sum(r[2] for r in dev)} 'next')"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
