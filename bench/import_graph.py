"""The import graph between the project's packages: crossings, two-way pairs, cycles, imports in functions.

Reads the source (no import is executed) and counts, for docs/architecture.md, the imports between
the groups a newcomer thinks in: the command line (``forecaster`` but its settings and Kafka
helpers), ``forecaster.settings``/``forecaster.kafka``, ``producers``, ``models.core``, the rest of
``models``, ``stream_app``, ``api`` and ``grafana``. ``make lint`` enforces the layers themselves
(``lint-imports``, contracts in pyproject.toml); this script only measures.

Run: ``.venv/bin/python -m bench.import_graph``.
"""

from __future__ import annotations

import ast
import collections
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("forecaster", "producers", "models", "stream_app", "api", "grafana")


@dataclass(frozen=True, order=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def group(module: str) -> str:
    """The package group of a module.

    >>> group("forecaster.kafka.topics"), group("forecaster.commands.replay"), group("models.core.step")
    ('forecaster.settings/kafka', 'forecaster (command line)', 'models.core')
    """
    parts = module.split(".")
    if parts[0] == "forecaster":
        ground = parts[1:2] in (["settings"], ["kafka"])
        return "forecaster.settings/kafka" if ground else "forecaster (command line)"
    if parts[0] == "models":
        return "models.core" if parts[1:2] == ["core"] else "models"
    return parts[0]


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(known: dict[str, Path]) -> Iterator[Import]:
    """Every import of a project module by a project module, resolved to the module imported."""
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node, in_function in _import_nodes(ast.parse(path.read_text()), False):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if (imported := _resolve(target, known)) and imported != module:
                    yield Import(module, imported, node.lineno, in_function)


def _import_nodes(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield from _import_nodes(child, in_function or function)


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module that ``name`` (a module or a name in one) is, or None when not the project's."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected sets of more than one node (Tarjan)."""
    graph = collections.defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for node in sorted({n for edge in edges for n in edge}):
        if node not in index:
            visit(node)
    return sorted(found)


def two_way(edges: set[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted({(min(a, b), max(a, b)) for a, b in edges if a != b and (b, a) in edges})


def main() -> None:
    known = modules()
    found = sorted(set(imports(known)))
    print(f"modules: {len(known)}; imports between them: {len({(i.importer, i.imported) for i in found})}")
    counts: collections.Counter[tuple[str, str, bool]] = collections.Counter(
        (group(i.importer), group(i.imported), i.in_function) for i in found
        if group(i.importer) != group(i.imported))
    print("\ngroup -> group: import statements at module level + inside functions")
    for a, b in sorted({(a, b) for a, b, _ in counts}):
        print(f"  {a:27s} -> {b:27s} {counts[a, b, False]:3d} + {counts[a, b, True]:2d}")
    groups = {(group(i.importer), group(i.imported)) for i in found}
    packages = {(i.importer.split(".")[0], i.imported.split(".")[0]) for i in found}
    print(f"\ntwo-way group pairs: {two_way(groups)}")
    print(f"two-way top-level package pairs: {two_way(packages)}")
    print(f"group cycles: {cycles({e for e in groups if e[0] != e[1]})}")
    print(f"module cycles: {cycles({(i.importer, i.imported) for i in found})}")
    inside = [i for i in found if i.in_function]
    print(f"\nimports of project modules inside functions: {len(inside)}")
    for i in inside:
        print(f"  {known[i.importer].relative_to(ROOT)}:{i.line} {i.imported}")


if __name__ == "__main__":
    main()
