"""The house's rules, read from the code's own imports: `app/` (what every stage shares) imports no outer
package, and no two modules import each other in a loop, counting imports inside functions, which would
otherwise hide one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "pipelines", "serve", "training", "bench", "devstack", "cli", "cluster")
OUTER = tuple(p for p in PACKAGES if p != "app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        root = REPO / package
        if root.is_dir():
            for path in sorted(root.rglob("*.py")):
                found[_module_name(path)] = path
    return found


SOURCES = _sources()


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported project module, line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports the module a.b when there is one, else a name from a.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in SOURCES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.append((name, node.lineno))
    return found


GRAPH = {module: _imports(module, path) for module, path in SOURCES.items()}


def test_the_tree_is_read() -> None:
    assert "app.config" in SOURCES and "serve.app" in SOURCES
    assert ("app.config", 3) not in GRAPH["app.config"]  # sanity: the graph holds project modules only
    assert any(name == "app.config" for name, _ in GRAPH["serve.app"])


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m.split(".")[0] == "app"))
def test_app_imports_no_outer_package(module: str) -> None:
    outer = [f"{name} (line {line})" for name, line in GRAPH[module] if name.split(".")[0] in OUTER]
    assert not outer, f"{SOURCES[module].relative_to(REPO)} is shared core but imports {', '.join(outer)}"


def test_no_import_cycles() -> None:
    edges = {m: sorted({n for n, _ in GRAPH[m] if n in SOURCES and n != m}) for m in SOURCES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    # A package's __init__ that only re-exports its submodules is the one loop Python expects.
    real = [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert not real, "modules importing each other in a loop: " + "; ".join(" ↔ ".join(c) for c in real)


def test_only_the_cli_imports_the_deployment_renderer() -> None:
    """cluster/ renders how keyscope is deployed; no stage may depend on it (cluster/__init__.py says why)."""
    importers = sorted(
        f"{module} (line {line})"
        for module, imports in GRAPH.items()
        if module.split(".")[0] not in ("cluster", "cli")
        for name, line in imports
        if name.split(".")[0] == "cluster"
    )
    assert not importers, f"imports of cluster/: {', '.join(importers)}"


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if m != "app.config"))
def test_only_the_settings_read_the_environment(module: str) -> None:
    """One Settings, read once (app/config.py): any other module reading os.environ drifts from it."""
    tree = ast.parse(SOURCES[module].read_text())
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in ("environ", "getenv", "environb")
    ]
    assert not reads, f"{SOURCES[module].relative_to(REPO)} reads the environment at lines {reads}; use Settings"
