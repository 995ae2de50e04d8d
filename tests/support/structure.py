"""The project's structure as its imports draw it, for reviews and the structure test.

``make structure`` prints the import circles between modules (every import counted,
those made only for type checking too), the arrows between folders, and the largest
modules and functions; ``make lint`` runs it with ``--check``, which fails on a circle. The packages' layers are kept
by import-linter's contracts (``[tool.importlinter]`` in ``pyproject.toml``); this adds
what contracts do not say: where modules import each other round in a circle.
"""

from __future__ import annotations

import argparse
import ast
import collections
import functools
from pathlib import Path

import grimp  # import-linter's graph builder

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("objects", "vineyard_runtime", "fluid_core")


def import_graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Each module of ``packages`` and the modules of ``packages`` it imports."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    return {module: {m for m in graph.find_modules_directly_imported_by(module) if m.split(".")[0] in packages}
            for module in graph.modules if module.split(".")[0] in packages}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other round in a circle (Tarjan's
    strongly connected components of more than one module), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: deep import chains must not hit the recursion limit
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def folder_arrows(graph: dict[str, set[str]]) -> collections.Counter[tuple[str, str]]:
    """Imports between folders (a package's modules count as their folder)."""
    @functools.cache  # one look at the disk a module
    def folder(module: str) -> str:
        path = ROOT / Path(*module.split("."))
        return module if path.is_dir() else module.rpartition(".")[0]

    arrows: collections.Counter[tuple[str, str]] = collections.Counter()
    for module, imported in graph.items():
        for other in imported:
            if folder(module) != folder(other):
                arrows[folder(module), folder(other)] += 1
    return arrows


def largest(packages: tuple[str, ...] = PACKAGES, count: int = 10) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The ``count`` longest modules and functions (lines, place)."""
    modules, functions = [], []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            where = str(path.relative_to(ROOT))
            modules.append((len(text.splitlines()), where))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                    functions.append((node.end_lineno - node.lineno + 1, f"{where}:{node.lineno} {node.name}"))
    return sorted(modules, reverse=True)[:count], sorted(functions, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES))
    parser.add_argument("--check", action="store_true", help="only say whether modules import in a circle")
    args = parser.parse_args()
    packages = tuple(args.packages)
    graph = import_graph(packages)
    found = circles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports between them, {len(found)} circle(s)")
    for group in found:
        print("  circle:", " <-> ".join(group))
    if args.check:
        raise SystemExit(1 if found else 0)
    print("imports between folders:")
    for (source, target), number in sorted(folder_arrows(graph).items()):
        print(f"  {source} -> {target}: {number}")
    modules, functions = largest(packages)
    print("largest modules:", *(f"  {lines:5d}  {where}" for lines, where in modules), sep="\n")
    print("largest functions:", *(f"  {lines:5d}  {where}" for lines, where in functions), sep="\n")


if __name__ == "__main__":
    main()
