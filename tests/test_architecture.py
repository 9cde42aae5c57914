"""The layers point one way: read from the source (ast), imports inside functions included.

Face (cli) -> check -> {observe, policy, hints, projections} -> store -> events. The policy and
the hint rules import nothing that does I/O, so they can be run on a history held in memory.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PURE = ("recovery.policy", "recovery.hints")
# Modules the pure core must not reach, directly or through another module of ours.
IO_MODULES = ("recovery.probe", "recovery.pm2", "recovery.store", "recovery.logs", "recovery.telemetry")
IO_MODULES += ("recovery.alerts", "recovery.check")
IO_LIBRARIES = ("httpx", "sqlite3", "subprocess", "socket")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "cli":
        parts[0] = "recovery_cli"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    files = [*(REPO / "recovery").rglob("*.py"), *(REPO / "cli").rglob("*.py")]
    return {module_name(p): p for p in files}


SOURCES = sources()


def imports_of(name: str) -> set[str]:
    """Every module `name` imports anywhere in its file, as absolute names."""
    path = SOURCES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from . import policy` imports the module recovery.policy
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in SOURCES)
    return found


GRAPH = {name: imports_of(name) for name in SOURCES}


def ours(name: str) -> set[str]:
    return {m for m in GRAPH[name] if m in SOURCES and m != name}


def closure(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for m in ours(todo.pop()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def reaches(modules: set[str], target: str) -> bool:
    return any(m == target or m.startswith(target + ".") for m in modules)


def test_recovery_has_no_import_circle():
    # Tarjan's strongly connected components over our own modules.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in ours(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(SOURCES):
        if name not in index:
            visit(name)
    assert circles == []


@pytest.mark.parametrize("pure", PURE)
def test_the_pure_core_imports_nothing_that_does_io(pure):
    reached = closure(pure)
    assert [m for m in IO_MODULES if reaches(reached, m)] == []
    libraries = {lib for m in reached for lib in GRAPH[m] if lib.split(".")[0] in IO_LIBRARIES}
    assert libraries == set()


def test_the_store_knows_events_not_read_models():
    reached = closure("recovery.store")
    assert [m for m in ("recovery.projections", "recovery.report", "recovery.hints") if reaches(reached, m)] == []


def test_no_module_of_the_cli_imports_sqlite3():
    assert sorted(m for m in SOURCES if m.startswith("recovery_cli") and "sqlite3" in GRAPH[m]) == []


def test_the_domain_never_imports_the_cli_or_typer():
    domain = [m for m in SOURCES if m.startswith("recovery.") or m == "recovery"]
    assert sorted(m for m in domain if {"typer", "recovery_cli"} & {i.split(".")[0] for i in GRAPH[m]}) == []


def test_the_import_reader_sees_imports_inside_functions():
    # check.py imports the alerts module only inside send_alerts: the graph must still hold it.
    assert "recovery.alerts" in GRAPH["recovery.check"]
