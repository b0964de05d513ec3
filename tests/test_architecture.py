"""The package layout is the architecture (docs/architecture.md): no import circles, no upward imports, few
modules at the top. The import graph is read with ``ast`` (function-level imports included), nothing is imported."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "comovi_core"


def _layers() -> dict[str, int]:
    """package (or top-level module) -> rank, from the table in docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("<!-- layers:", 1)[1]
    ranks = {}
    for rank, names in re.findall(r"^\| (\d+) \| ([^|]+) \|", table, flags=re.M):
        for name in re.findall(r"`(\w+)`", names):
            ranks[name] = int(rank)
    return ranks


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in CORE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the comovi_core modules it imports (``from . import x`` names module x, not the package)."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name.split(".") if is_package else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    targets.add(full if full in modules else source)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_layer_table_names_every_package_and_top_level_module():
    ranks = _layers()
    present = {_layer_of(m) for m in _modules()}
    assert present == set(ranks), f"in the code, not in docs/architecture.md: {sorted(present - set(ranks))}; " + (
        f"in the table, not in the code: {sorted(set(ranks) - present)}"
    )


def test_no_import_circles():
    assert _circles(import_graph()) == []


def test_no_module_imports_a_higher_layer():
    ranks = _layers()
    upward = [
        f"{m} (rank {ranks[_layer_of(m)]}) imports {t} (rank {ranks[_layer_of(t)]})"
        for m, targets in import_graph().items()
        for t in targets
        if _layer_of(t) != _layer_of(m) and ranks[_layer_of(t)] >= ranks[_layer_of(m)]
    ]
    assert upward == []


def test_at_most_ten_modules_directly_in_the_package():
    top = sorted(p.name for p in CORE.glob("*.py"))
    assert len(top) <= 10, top


@pytest.mark.parametrize(
    "graph, circles",
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_circle_finder_finds_circles(graph, circles):
    assert _circles(graph) == circles


def test_the_graph_sees_function_level_and_sibling_imports():
    graph = import_graph()
    assert "comovi_core.motion_map.render_gl" in graph["comovi_core.motion_map.render"]  # `from . import render_gl`
    assert "comovi_core.recovery.hmr.camerahmr_loading" in graph["comovi_core.recovery.hmr.loading"]  # in a function


# Names many modules define on purpose: each command's entry points, and the renderer backends' shared interface.
SHARED_NAMES = {"main", "parse_args", "run", "render_frames"}


def test_no_concept_is_defined_in_two_places():
    """Public classes, functions and constants have one home: a name defined at the top of two modules is either
    one concept written twice or two concepts sharing a name."""
    homes: dict[str, list[str]] = {}
    for path in CORE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
            for name in names:
                if not name.startswith("_") and name not in SHARED_NAMES:
                    homes.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert {name: where for name, where in homes.items() if len(where) > 1} == {}
