"""pydoc-pairs: a real-text sentence-pair task (two classes) from the documentation that ships with Python.

Does sentence B follow sentence A in the same piece of documentation? The texts are those
:mod:`econ_ray.data.pydoc_corpus` reads: each standard-library docstring and each page of
``pydoc_data.topics`` is a document, cut into sentences (a full stop, question or exclamation mark, then
a space and a capital letter; whitespace runs as one space; ``MIN_CHARS``..``MAX_CHARS`` characters).
A document of more than ``CHUNK`` sentences is cut into chunks of ``CHUNK``, each then a document of its
own, so that no long reference page (the language reference has pages of 200 sentences) fills a split.
Each position i of a document's sentences but the last gives one pair, by a seeded coin:

- label 1 (``next``): sentence i and sentence i + 1 of the same document;
- label 0 (``other``): sentence i and a sentence drawn from a document of another module or page.

Documents are split, not pairs: validation documents are disjoint from training documents, negatives
draw their second sentence from their own side, and a training pair with a sentence that also occurs in
a validation pair (a line repeated across docstrings) is dropped. Each row carries its document
(``group``), so that a held-out split carved from the training rows takes whole documents too
(``econ_ray.data.sources.load_task``). A model has to read both sentences: a negative's second sentence
is a real documentation sentence as well. The rows are collected in a fresh interpreter (pydoc-corpus's
rules) and cached per Python build. ``builtin:pydoc-pairs`` reads them; ``scripts/make_pydoc_pairs.py``
writes them as GLUE-layout TSV files (``train.tsv``, ``dev.tsv``) for any tool.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from functools import lru_cache

from econ_ray.data import pydoc_corpus

MIN_CHARS = 24
MAX_CHARS = 220
CHUNK = 8  # sentences per document at most: longer documents are cut into chunks (below)
LABELS = ("other", "next")
PAIRS_VERSION = 2  # part of the cache file's name: bump when the rules above change

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def sentences_of(text: str) -> list[str]:
    """``text``'s sentences in order, whitespace runs as one space, short and long ones dropped."""
    flat = re.sub(r"\s+", " ", text).strip()
    return [s for s in _SENTENCE_END.split(flat) if MIN_CHARS <= len(s) <= MAX_CHARS]


def collect() -> list[tuple[str, list[str]]]:
    """(source, sentences) of every document with two sentences or more: the topics pages (source
    ``topics:<name>``) and each public module's docstrings (source: the module), in a fixed order."""
    import pydoc_data.topics

    docs: list[tuple[str, list[str]]] = []
    seen: set[str] = set()
    for name, text in sorted(pydoc_data.topics.topics.items()):
        docs.append((f"topics:{name}", sentences_of(text)))
    for name in pydoc_corpus.module_names():
        module = pydoc_corpus._import(name)
        if module is None:
            continue
        for doc in pydoc_corpus._docs(module):
            if doc in seen:
                continue
            seen.add(doc)
            docs.append((name, sentences_of(doc)))
    # a long page in chunks of CHUNK sentences: one page (the language reference has pages of 200
    # sentences) would otherwise fill most of a split on its own
    chunks = [(src, sents[i : i + CHUNK]) for src, sents in docs for i in range(0, len(sents), CHUNK)]
    return [(src, part) for src, part in chunks if len(part) >= 2]


@lru_cache(maxsize=1)
def _documents() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """:func:`collect` in a fresh interpreter, cached on disk per Python build (as pydoc-corpus)."""
    path = pydoc_corpus.cache_file().with_name(
        pydoc_corpus.cache_file().name.replace("pydoc-corpus-", f"pydoc-pairs-v{PAIRS_VERSION}-")
    )
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
    else:
        code = (
            "import json, sys; from econ_ray.data.pydoc_pairs import collect; "
            "sys.stdout.write(chr(10).join(json.dumps(d) for d in collect()))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pydoc-pairs: collecting Python's documentation failed: {proc.stderr[-500:]}")
        lines = proc.stdout.splitlines()
        pydoc_corpus.write_cache(path, lines)
    return tuple((src, tuple(sents)) for src, sents in (json.loads(line) for line in lines))


def make_pairs(docs: Sequence[tuple[str, Sequence[str]]], seed: int) -> list[list[tuple[str, str, int]]]:
    """Per document, in a seeded order of documents: one (sentence A, sentence B, label) per position i
    of its sentences but the last, a positive (i, i + 1) or a negative (i, a sentence of another module
    or page) by a seeded coin (see the module docstring)."""
    rng = random.Random(seed)
    order = list(range(len(docs)))
    rng.shuffle(order)
    out = []
    for d in order:
        src, sents = docs[d]
        top = src.split(".")[0]
        rows = []
        for i in range(len(sents) - 1):
            if rng.random() < 0.5:
                rows.append((sents[i], sents[i + 1], 1))
                continue
            for _ in range(100):  # a document of another module or page
                osrc, osents = docs[rng.randrange(len(docs))]
                if osrc.split(".")[0] != top:
                    rows.append((sents[i], osents[rng.randrange(len(osents))], 0))
                    break
        out.append(rows)
    return out


Row = tuple[str, str, int, int]  # sentence A, sentence B, label, document number (the group)


def build(seed: int = 0, n_validation: int = 1000) -> tuple[list[Row], list[Row]]:
    """(train rows, validation rows), each row (A, B, label, document). The documents, in a seeded
    order, go to validation until they hold ``n_validation`` pairs or more, the rest to training;
    :func:`make_pairs` pairs each side within itself (a negative's sentence comes from the same side's
    documents). The document number lets a held-out split take whole documents too."""
    docs = list(_documents())
    random.Random(seed).shuffle(docs)
    cut, count = 0, 0
    while cut < len(docs) and count < n_validation:
        count += len(docs[cut][1]) - 1
        cut += 1
    validation = [(*r, d) for d, rows in enumerate(make_pairs(docs[:cut], seed)) for r in rows]
    train = [(*r, cut + d) for d, rows in enumerate(make_pairs(docs[cut:], seed + 1)) for r in rows]
    # a sentence repeated across documents (a shared docstring line) stays on the validation side only
    seen = {s for a, b, _, _ in validation for s in (a, b)}
    return [r for r in train if r[0] not in seen and r[1] not in seen], validation
