"""pypi-docs-corpus: docstrings read from package sources with ast (nothing imported), paragraphs kept
once, test folders left out, deterministic rows, and the built-in split."""

from __future__ import annotations

import textwrap

import pytest

from econ_ray.data import pypi_docs_corpus as pc

SOURCE = textwrap.dedent(
    '''
    """Module doc: what the module is for, at some length.

    A second paragraph of the module docstring, long enough."""

    import os  # a side effect that must not run: nothing is imported
    os.environ["PYPI_DOCS_CORPUS_RAN"] = "1"

    class Public:
        """A public class, documented in a sentence."""

        def method(self):
            """A public method, documented in a sentence."""

        def _private(self):
            """A private method: this paragraph must not appear."""

        def __call__(self):
            """A dunder method, documented in a sentence."""

    def _helper():
        """A private helper: this paragraph must not appear."""
    '''
)


def test_docstrings_of_reads_public_docs_without_running_the_module():
    import os

    docs = pc.docstrings_of(SOURCE)
    text = "\n".join(docs)
    assert "Module doc" in text and "A public class" in text and "A public method" in text
    assert "A dunder method" in text
    assert "must not appear" not in text
    assert "PYPI_DOCS_CORPUS_RAN" not in os.environ
    assert pc.docstrings_of("def broken(:\n") == []  # a file that does not parse gives nothing


def _package(root, name="fakepkg"):
    pkg = root / name
    (pkg / "tests").mkdir(parents=True)
    (pkg / "sub").mkdir()
    (pkg / "__init__.py").write_text(SOURCE)
    (pkg / "sub" / "mod.py").write_text('"""A submodule docstring that is long enough to keep."""\n')
    (pkg / "tests" / "test_x.py").write_text('"""A test module docstring that is long enough to keep."""\n')
    (pkg / "bad.py").write_bytes(b"\xff\xfe not utf-8")
    return pkg


def test_package_paragraphs_skip_test_folders_and_keep_each_paragraph_once(tmp_path):
    pkg = _package(tmp_path)
    (pkg / "copy.py").write_text(SOURCE)  # the same docstrings twice
    paras = pc.package_paragraphs(pkg)
    assert "A submodule docstring that is long enough to keep." in paras
    assert not any("test module" in p for p in paras)
    assert "A second paragraph of the module docstring, long enough." in paras  # cut at the blank line
    assert len([p for p in paras if p.startswith("A public class")]) == 1


def test_build_is_deterministic_and_cached_by_package_versions(tmp_path, monkeypatch):
    pkg = _package(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(pc, "installed", lambda: [("fakepkg", "1.0", pkg)])
    pc._paragraphs.cache_clear()
    try:
        rows = pc.build(0)
        assert rows == pc.build(0) and sorted(rows) == pc.collect()
        assert pc.build(1) != rows or len(rows) < 3
        assert pc.cache_file().is_file() and "pypi-docs-corpus-v" in pc.cache_file().name
        first = pc.cache_file()
        monkeypatch.setattr(pc, "installed", lambda: [("fakepkg", "2.0", pkg)])
        assert pc.cache_file() != first  # another version, another cache file
    finally:
        pc._paragraphs.cache_clear()


def test_the_builtin_splits_validation_first(tmp_path, monkeypatch):
    from econ_ray.data.builtin import generate

    monkeypatch.setattr(pc, "build", lambda seed=0: tuple(f"paragraph number {i} of the corpus" for i in range(50)))
    train, val = generate("pypi-docs-corpus", 0, {"n_validation": 10})
    assert [r["text"] for r in val] == [f"paragraph number {i} of the corpus" for i in range(10)]
    assert len(train) == 40 and not {r["text"] for r in train} & {r["text"] for r in val}
    with pytest.raises(ValueError, match="leaves no training rows"):
        generate("pypi-docs-corpus", 0, {"n_validation": 50})
