"""The shape of the code, kept by a test: imports run one way (no circle among the modules of ``bridge`` and
``web``), ``bridge`` reaches ``web`` only where the ``web`` command is registered, and no function or module
grows past the size a reader can hold (the mixer's measured hot path excepted)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridge", "web")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600
#: Measured hot paths, allowed to be long because splitting them cost time per tick (README "Mixer").
LONG_FUNCTIONS_ALLOWED = {("bridge/mixer/mixer.py", "tick"), ("bridge/mixer/mixer.py", "_rebuild")}
LONG_MODULES_ALLOWED = {"bridge/mixer/mixer.py"}
#: Where ``bridge`` may import ``web``: the CLI that registers the ``web`` (and ``api serve``) commands, and the
#: manual's generator, which documents the REST API from the OpenAPI document the portal serves.
WEB_IMPORTERS_ALLOWED = {"bridge.cli", "bridge.docgen"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts:
                continue
            name = ".".join(relative.with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Modules of ours that ``name`` imports, resolved to the module (not the package re-exporting it).
    A submodule importing its own package's ``__init__`` is not counted: that is how packages work."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if not target or target == name or name.startswith(target + "."):
            return None
        return target

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (found := resolve(alias.name)) is not None:
                    yield found
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if (found := resolve(candidate if candidate in known else module)) is not None:
                    yield found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports(name, path, known)) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    assert cycles(import_graph()) == []


def test_bridge_imports_web_only_where_the_web_command_is_registered() -> None:
    offenders = {
        name
        for name, targets in import_graph().items()
        if name.startswith("bridge") and any(t == "web" or t.startswith("web.") for t in targets)
    }
    assert offenders <= WEB_IMPORTERS_ALLOWED


def test_functions_and_modules_stay_small() -> None:
    long_functions = []
    long_modules = []
    for path in modules().values():
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES and relative not in LONG_MODULES_ALLOWED:
            long_modules.append(f"{relative}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (relative, node.name) not in LONG_FUNCTIONS_ALLOWED:
                    long_functions.append(f"{relative}:{node.lineno} {node.name}: {lines} lines")
    assert long_functions == []
    assert long_modules == []
