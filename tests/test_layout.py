"""The package is laid out as wings with one-way imports (DESIGN.md, "The package: wings with one-way imports").

Every module's imports are read with ``ast`` (module-level and function-level alike; ``if TYPE_CHECKING:``
blocks are not imports at run time and are left out). The test fails on an import from a wing to one it
may not use, and on any circle of modules, naming the files.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import factory

PACKAGE = Path(factory.__file__).resolve().parent

#: wing -> the wings it may import (besides itself). "ground" is errors.py, paths.py and the package root.
MAY_IMPORT = {
    "cli": {"auto", "review", "build", "packs", "components", "models", "registry", "ground"},
    "auto": {"build", "registry", "components", "models", "ground"},
    "review": {"build", "registry", "ground"},
    "build": {"models", "components", "registry", "ground"},
    "packs": {"registry", "ground"},
    "components": {"ground"},
    "models": {"ground"},
    "registry": {"ground"},
    "ground": set(),
}
GROUND_MODULES = {"__init__", "errors", "paths", "untrusted"}
ENTRY_POINTS = {"__main__": "cli"}  # python -m factory runs the command line


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. factory.build.weights
    path: Path
    is_package: bool


def modules(root: Path) -> dict[str, Module]:
    """Every module of the package at ``root`` by dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Import statements anywhere (functions too), except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: Module, known: dict[str, Module]) -> dict[str, int]:
    """The modules of the package that ``module`` imports, with the line of the first such import."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))
    top = next(iter(known)).split(".")[0]
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    out: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        while name and name not in known:  # `import factory.x.Attr`-like names: the module that holds them
            name = name.rpartition(".")[0]
        if name and name != module.name:
            out.setdefault(name, line)

    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == top:
                    add(alias.name, node.lineno)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source.split(".")[0] != top:
            continue
        for alias in node.names:
            full = f"{source}.{alias.name}"
            add(full if full in known else source, node.lineno)
    return out


def wing_of(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) == 1:
        return "ground"
    if parts[1] in MAY_IMPORT and parts[1] != "ground":
        return parts[1]
    if len(parts) == 2 and parts[1] in GROUND_MODULES:
        return "ground"
    return ENTRY_POINTS.get(parts[1]) if len(parts) == 2 else None


def problems(root: Path) -> list[str]:
    """Every layout problem of the package at ``root``: unplaced modules, upward imports, circles."""
    known = modules(root)
    graph = {name: imports_of(mod, known) for name, mod in known.items()}
    rel = {name: mod.path.relative_to(root.parent).as_posix() for name, mod in known.items()}
    found = []
    for name in known:
        if wing_of(name) is None:
            found.append(f"{rel[name]}: not in a wing (move it into one of {', '.join(sorted(MAY_IMPORT))})")
    for name, targets in graph.items():
        here = wing_of(name)
        for target, line in targets.items():
            there = wing_of(target)
            if here and there and there != here and there not in MAY_IMPORT[here]:
                found.append(
                    f"{rel[name]}:{line}: the {here} wing imports {rel[target]} of the {there} wing "
                    f"({here} may import {', '.join(sorted(MAY_IMPORT[here])) or 'nothing'})"
                )
    for cycle in circles(graph):
        path = " -> ".join(f"{rel[a]}:{graph[a][b]}" for a, b in zip(cycle, cycle[1:] + cycle[:1]))
        found.append(f"import circle: {path} -> {rel[cycle[0]]}")
    return found


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(sorted(c), graph) for c in components]


def _cycle_in(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth first)."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    return paths[node]
                if nxt in members and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return component  # pragma: no cover  (a component always has a cycle)


# --- the package itself --------------------------------------------------------------
def test_the_package_has_no_upward_import_and_no_circle():
    assert problems(PACKAGE) == []


def test_every_wing_is_a_package_with_modules():
    for wing in MAY_IMPORT:
        if wing != "ground":
            assert (PACKAGE / wing / "__init__.py").is_file(), wing


# --- the checker on a package made for the test ----------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "factory"
    for rel, text in {"__init__.py": "", "errors.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    for wing in ("registry", "build", "models"):
        (root / wing).mkdir(exist_ok=True)
        (root / wing / "__init__.py").touch()
    return root


def test_a_circle_through_a_function_level_import_is_found(tmp_path):
    root = _tree(
        tmp_path,
        {
            "registry/table.py": "from factory.registry import loader\n",
            "registry/loader.py": "def load():\n    from .table import Table\n",
        },
    )
    found = problems(root)
    assert len(found) == 1 and found[0].startswith("import circle:")
    assert "factory/registry/loader.py:2" in found[0] and "factory/registry/table.py:1" in found[0]


def test_an_upward_import_names_both_files(tmp_path):
    root = _tree(
        tmp_path,
        {
            "registry/table.py": "import factory.build.resolve\n",
            "build/resolve.py": "from factory.registry.table import Table\n",
        },
    )
    found = problems(root)
    assert (
        "factory/registry/table.py:1: the registry wing imports factory/build/resolve.py of the build wing" in found[0]
    )
    assert any(f.startswith("import circle:") for f in found)


def test_sibling_wings_may_not_import_each_other(tmp_path):
    root = _tree(tmp_path, {"models/bert.py": "from factory.registry import table\n", "registry/table.py": ""})
    assert problems(root) == [
        "factory/models/bert.py:1: the models wing imports factory/registry/table.py of the registry wing "
        "(models may import ground)"
    ]


def test_type_checking_imports_and_allowed_directions_pass(tmp_path):
    root = _tree(
        tmp_path,
        {
            "registry/table.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from factory.build import x\n",
            "build/x.py": "from ..registry.table import T\nfrom factory import errors\n",
        },
    )
    assert problems(root) == []


def test_a_module_outside_the_wings_is_reported(tmp_path):
    root = _tree(tmp_path, {"helpers.py": ""})
    assert problems(root) == [
        "factory/helpers.py: not in a wing (move it into one of auto, build, cli, components, "
        "ground, models, packs, registry, review)"
    ]
