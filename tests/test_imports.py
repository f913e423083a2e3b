"""Data flows down: no import cycle between metaopt's modules at module level."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import PROJECT

PACKAGE = PROJECT / "metaopt"


def _module(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports() -> dict[str, set[str]]:
    """metaopt module -> the metaopt modules it imports at module level (not inside functions)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py") if "kernels/build" not in str(p)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.parse(path.read_text()).body:
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles of a directed graph (depth-first search; a package importing its own submodules, or
    a submodule its package, is not a cycle)."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def own(a: str, b: str) -> bool:
        return b.startswith(a + ".") or a.startswith(b + ".")

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if own(node, nxt):
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "p": {"p.x"}, "p.x": {"p"}}) == []


def test_no_module_level_import_cycle():
    assert find_cycles(module_level_imports()) == []
