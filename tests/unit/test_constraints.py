"""constraints.txt (the tested environment, for installing into one's own) agrees with pyproject.toml."""

import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parents[2]


def _pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(3)
    return out


def test_every_exact_pin_of_the_project_is_in_the_constraints_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"])
    have = _pins((ROOT / "constraints.txt").read_text().splitlines())
    assert wanted, "no exact pins read from pyproject.toml"
    assert {k: have.get(k) for k in wanted} == wanted
    assert "+" not in have["torch"], "torch without a local build tag: CUDA and CPU builds both fit"


def test_the_version_is_the_projects():
    import econ_ray

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert econ_ray.__version__ == version
