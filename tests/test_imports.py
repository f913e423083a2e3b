"""Data flows down: no import cycle between metaopt's modules at module level, none between its
packages counting imports inside functions too, and imports inside functions only where they
defer an optional or heavy dependency (or in the entry points, which start fast)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import PROJECT

PACKAGE = PROJECT / "metaopt"
# Imports a function may make: third-party packages that are heavy to import or needed by one
# path only, and the modules of metaopt that import them where a light module needs them in one
# function (the registry, which the CLI imports before it validates, must not import JAX or MLflow).
DEFERRED = ("ray", "mlflow", "matplotlib", "brax", "gymnax", "pyarrow", "jax",
            "metaopt.envs.minatar", "metaopt.envs.brax_envs", "metaopt.optimizers", "metaopt.tracking.mlflow_run",
            # Ray workers import these only after pinning their cores: importing them starts JAX's
            # CPU backend, which sizes XLA's thread pool (metaopt/distributed/cores.py).
            "metaopt.meta.run", "metaopt.evaluation.cell_work", "metaopt.tuning.trial_work")
# The entry points import what a command needs when it runs: `metaopt --help` and `metaopt doctor`
# on a broken install must not import JAX, Ray or MLflow first.
ENTRY_POINTS = ("metaopt.cli", "metaopt.doctor")


def _module(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in PACKAGE.rglob("*.py") if "kernels/build" not in str(p)}


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


def module_level_imports() -> dict[str, set[str]]:
    """metaopt module -> the metaopt modules it imports at module level (not inside functions)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.parse(path.read_text()).body:
            found |= {t for t in _targets(node) if t in modules and t != name}
        graph[name] = found
    return graph


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_imports() -> dict[str, set[str]]:
    """metaopt package (or top-level module) -> the others it imports anywhere, inside functions too."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _targets(node):
                if target in modules and _package(target) != _package(name):
                    graph.setdefault(_package(name), set()).add(_package(target))
    return graph


def imports_inside_functions() -> list[str]:
    """`module:line imported` for every import inside a function of metaopt, entry points left out."""
    found = []
    for name, path in _modules().items():
        if name in ENTRY_POINTS:
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom | ast.Import) and not (isinstance(node, ast.ImportFrom) and node.level):
                    names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                    found += [f"{name}:{node.lineno} {n}" for n in names]
    return found


def deferred(entry: str) -> bool:
    imported = entry.split()[-1]
    return any(imported == d or imported.startswith(d + ".") for d in DEFERRED)


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


def test_no_package_level_import_cycle_counting_imports_inside_functions():
    graph = package_imports()
    assert "metaopt.training" in graph["metaopt.evaluation"]  # the graph is read, not empty
    assert find_cycles(graph) == []


def test_functions_import_only_deferred_dependencies():
    found = imports_inside_functions()
    assert any(deferred(e) for e in found)  # ray inside the plan's Ray task, matplotlib in plotting...
    assert [e for e in found if not deferred(e)] == []
    assert not deferred("metaopt.x:1 metaopt.config") and deferred("metaopt.x:1 mlflow.exceptions")
