"""The import layering of ``econ_ray`` (docs/architecture.md): no import cycles, no upward imports.

The imports are read with ``ast`` from the source, without importing anything: every ``import`` and
``from ... import`` anywhere in a module (inside functions and ``if TYPE_CHECKING:`` blocks too),
relative imports, ``from pkg import name`` where ``name`` is a submodule, and
``importlib.import_module("...")`` with a literal name. Each target is resolved to the longest
existing module name it starts with; a package's ``__init__`` is the package's module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "econ_ray"

# lowest first; a module may import its own layer or a lower one. The top package ``econ_ray``
# (its __init__, the public API) may import anything and nothing inside may import it.
LAYERS: dict[str, int] = {
    "econ_ray._version": 0,  # the version string, read by the CLI and the tracking tags
    "econ_ray.config": 0,  # pure: the schema and config loading
    "econ_ray.compute": 0,  # pure: FLOPs and latency math
    "econ_ray.metrics": 0,  # pure: task and allocation metrics
    "econ_ray.data": 1,
    "econ_ray.attention": 1,
    "econ_ray.surgery": 1,  # masks, scores, physical pruning: model facts the objectives use
    "econ_ray.objectives": 2,
    "econ_ray.modeling": 2,
    "econ_ray.training": 3,
    "econ_ray.tracking": 4,
    "econ_ray.search": 5,
    "econ_ray.experiments": 5,
    "econ_ray.cli": 6,
    "econ_ray._api": 7,  # the public API's own functions (load_model), beside the top package
}

# Allowed exceptions, (importing module, imported module) for an import of a higher layer: none. The
# test fails on any violation not listed here AND on any listed one that no longer exists, so a list
# that someone fills to get past the test has to name each exception and keep it true.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()
# the modules of each import cycle (a strongly connected component of the import graph); none allowed
KNOWN_CYCLES: set[frozenset[str]] = set()


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    line: int
    target: str  # the imported module, resolved to the longest existing module name


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file for every ``.py`` file of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: Iterable[str]) -> str | None:
    """The longest existing module name that ``name`` is or starts with (``None``: not ours)."""
    parts = name.split(".")
    known = set(modules)
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in known:
            return cand
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """Every import of one of ``modules`` by ``module`` (itself excluded)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    # the package a relative import is relative to
    here = module.split(".") if _is_package(path) else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level - 1 <= len(here) else []
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            if not stem:
                continue
            # `from pkg import name`: the submodule pkg.name if there is one, else pkg itself
            for alias in node.names:
                found.append((node.lineno, stem if alias.name == "*" else f"{stem}.{alias.name}"))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name == "import_module" and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    out = []
    for line, name in found:
        target = _resolve(name, modules)
        if target is not None and target != module:
            out.append(Import(module, line, target))
    return out


def all_imports(root: Path, package: str) -> list[Import]:
    modules = module_names(root, package)
    return [imp for m, p in modules.items() for imp in imports_of(m, p, modules)]


def layer_of(module: str, layers: Mapping[str, int]) -> int | None:
    """The layer of ``module``: that of the longest entry of ``layers`` it is or is inside."""
    best = _resolve(module, layers)
    return None if best is None else layers[best]


def unlayered(modules: Iterable[str], package: str, layers: Mapping[str, int]) -> list[str]:
    """Modules below the top package that no entry of ``layers`` covers."""
    return sorted(m for m in modules if m != package and layer_of(m, layers) is None)


def upward_imports(imports: Iterable[Import], package: str, layers: Mapping[str, int]) -> list[Import]:
    """Imports of a higher layer, and imports of the top package from inside it."""
    bad = []
    for imp in imports:
        if imp.module == package:
            continue  # the public API may import anything
        if imp.target == package:
            bad.append(imp)
            continue
        low, high = layer_of(imp.module, layers), layer_of(imp.target, layers)
        if low is not None and high is not None and high > low:
            bad.append(imp)
    return bad


def import_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) for each strongly connected component of more than one module.
    An import of the module's own enclosing package (``module.startswith(target + ".")``) is no edge."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in imports:
        if not imp.module.startswith(imp.target + "."):
            graph[imp.module].add(imp.target)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    sccs.append(comp)
    return [_a_cycle(comp, graph) for comp in sorted(sccs, key=sorted)]


def _a_cycle(comp: set[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(comp)
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child in comp and child not in prev:
                    prev[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(comp)}")


def _lines(imports: Iterable[Import], pairs: Iterable[tuple[str, str]]) -> str:
    want = set(pairs)
    hits = sorted({(i.module, i.line, i.target) for i in imports if (i.module, i.target) in want})
    return "\n".join(f"  {m} (line {n}) imports {t}" for m, n, t in hits)


# ---- the real tree ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree_imports() -> list[Import]:
    return all_imports(ROOT, PACKAGE)


def test_every_module_has_a_layer():
    missing = unlayered(module_names(ROOT, PACKAGE), PACKAGE, LAYERS)
    assert not missing, f"modules outside every layer of LAYERS (add the subpackage to the table): {missing}"


def test_no_upward_imports(tree_imports):
    found = {(i.module, i.target) for i in upward_imports(tree_imports, PACKAGE, LAYERS)}
    new, gone = found - KNOWN_VIOLATIONS, KNOWN_VIOLATIONS - found
    assert not new, "imports of a higher layer (or of the top package econ_ray):\n" + _lines(tree_imports, new)
    assert not gone, f"KNOWN_VIOLATIONS lists imports that no longer exist; remove them: {sorted(gone)}"


def test_no_import_cycles(tree_imports):
    cycles = import_cycles(tree_imports)
    # the whole strongly connected component of each cycle, to compare with KNOWN_CYCLES
    found = {frozenset(_component(c[0], tree_imports)) for c in cycles}
    new = [c for c in cycles if frozenset(_component(c[0], tree_imports)) not in KNOWN_CYCLES]
    gone = KNOWN_CYCLES - found
    assert not new, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in new)
    assert not gone, f"KNOWN_CYCLES lists cycles that no longer exist as such; update it: {[sorted(g) for g in gone]}"


def _component(module: str, imports: Iterable[Import]) -> set[str]:
    """The strongly connected component of ``module``: modules it reaches that reach it back."""
    graph: dict[str, set[str]] = defaultdict(set)
    back: dict[str, set[str]] = defaultdict(set)
    for i in imports:
        if not i.module.startswith(i.target + "."):
            graph[i.module].add(i.target)
            back[i.target].add(i.module)

    def reach(g: Mapping[str, set[str]]) -> set[str]:
        seen, todo = {module}, [module]
        while todo:
            for n in g.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    return reach(graph) & reach(back)


# ---- the checker itself ----------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


TOY_LAYERS = {"toy.low": 0, "toy.high": 1}


def test_checker_flags_an_upward_import_inside_a_function(tmp_path):
    _write(
        tmp_path,
        {
            "toy/__init__.py": "",
            "toy/low/__init__.py": "",
            "toy/low/a.py": "def f():\n    from toy.high import b\n    return b\n",
            "toy/high/__init__.py": "",
            "toy/high/b.py": "import toy.low\n",
        },
    )
    imports = all_imports(tmp_path, "toy")
    assert [(i.module, i.line, i.target) for i in upward_imports(imports, "toy", TOY_LAYERS)] == [
        ("toy.low.a", 2, "toy.high.b")
    ]
    # the table is what is checked: with the layers swapped, the other import is the upward one
    swapped = upward_imports(imports, "toy", {"toy.low": 1, "toy.high": 0})
    assert [(i.module, i.target) for i in swapped] == [("toy.high.b", "toy.low")]
    assert import_cycles(imports) == []


def test_checker_resolves_relative_and_submodule_imports(tmp_path):
    _write(
        tmp_path,
        {
            "toy/__init__.py": "from toy.high import c\n",  # the top package may import anything
            "toy/low/__init__.py": "from . import a\n",
            "toy/low/a.py": "from ..high import b as _b\nfrom .. import __version__\n",
            "toy/high/__init__.py": "from .b import X\n",
            "toy/high/b.py": "X = 1\nfrom toy.low import a\nfrom toy import low\n",
            "toy/high/c.py": "import importlib\nimportlib.import_module('toy.low.a')\nfrom toy.high import X\n",
        },
    )
    imports = all_imports(tmp_path, "toy")
    got = {(i.module, i.target) for i in imports}
    assert got == {
        ("toy", "toy.high.c"),
        ("toy.low", "toy.low.a"),
        ("toy.low.a", "toy.high.b"),
        ("toy.low.a", "toy"),
        ("toy.high", "toy.high.b"),
        ("toy.high.b", "toy.low.a"),
        ("toy.high.b", "toy.low"),
        ("toy.high.c", "toy.low.a"),
        ("toy.high.c", "toy.high"),  # X is a name of the package, not a submodule: the package itself
    }
    assert {(i.module, i.target) for i in upward_imports(imports, "toy", TOY_LAYERS)} == {
        ("toy.low.a", "toy.high.b"),
        ("toy.low.a", "toy"),  # nothing inside may import the top package
    }
    # toy.high.c -> toy.high is its own package: no edge; toy.low.a -> toy.high.b -> toy.low.a is a cycle
    assert import_cycles(imports) == [["toy.high.b", "toy.low.a", "toy.high.b"]]


def test_checker_reports_a_longer_cycle_through_packages(tmp_path):
    _write(
        tmp_path,
        {
            "toy/__init__.py": "",
            "toy/low/__init__.py": "from toy.low.a import A\n",
            "toy/low/a.py": "import toy.high.b\nA = 1\n",
            "toy/high/__init__.py": "",
            "toy/high/b.py": "from toy.low import A\n",  # the package __init__ is the package's module
        },
    )
    assert import_cycles(all_imports(tmp_path, "toy")) == [["toy.high.b", "toy.low", "toy.low.a", "toy.high.b"]]


def test_checker_requires_every_subpackage_in_the_table(tmp_path):
    _write(tmp_path, {"toy/__init__.py": "", "toy/low/__init__.py": "", "toy/extra.py": ""})
    assert unlayered(module_names(tmp_path, "toy"), "toy", TOY_LAYERS) == ["toy.extra"]
