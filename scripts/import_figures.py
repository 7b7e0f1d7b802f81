#!/usr/bin/env python3
"""Import figures of a chatbot-backup checkout, from the code's own `ast` imports.

Usage: python3 scripts/import_figures.py [REPO]   (default: the current folder)

- modules: every .py file under flows/, tasks/, deployments/ (packages count as modules)
- arrows: distinct (importer, imported) pairs between those modules; `from a import b`
  is an arrow to a.b when a.b is a module, else to a; imports inside functions and
  under TYPE_CHECKING count too
- circles: strongly connected groups of two or more modules
- upward arrows: the fewest arrows whose removal leaves no circle (exact, per circle)
  plus, when a wing layering is given (tasks/<wing>/), arrows from a lower wing to a
  higher one (LAYERS below, lowest first)
- largest module: lines of the longest file
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path

ROOTS = ("flows", "tasks", "deployments")
# the wing order of the import-linter contract, lowest first; wings on one rung are
# independent of each other
LAYERS = [
    {"tasks.core"},
    {"tasks.stream", "tasks.storage"},
    {"tasks.sources", "tasks.archive", "tasks.catalog"},
    {"tasks.backup", "tasks.retention"},
    {"tasks.restore"},
    {"tasks.verify"},
    {"tasks.offsite", "tasks.monitor"},
    {"tasks.pitr", "tasks.migrate", "tasks.drill"},
    {"tasks.steps"},
    {"deployments"},
    {"flows"},
]


def module_name(repo: Path, path: Path) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect(repo: Path) -> tuple[dict[str, int], set[tuple[str, str]]]:
    files = {}
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            files[module_name(repo, path)] = path
    lines = {m: len(p.read_text().splitlines()) for m, p in files.items()}
    arrows: set[tuple[str, str]] = set()
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in files else base)
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    arrows.add((mod, target))
    return lines, arrows


def circles(nodes: list[str], arrows: set[tuple[str, str]]) -> list[list[str]]:
    graph = {n: sorted(b for a, b in arrows if a == n) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = itertools.count()
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = next(counter)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for n in nodes:
        if n not in index:
            visit(n)
    return found


def acyclic(group: list[str], arrows: set[tuple[str, str]]) -> bool:
    return not circles(group, arrows)


def feedback_arcs(group: list[str], arrows: set[tuple[str, str]]) -> int:
    inner = {(a, b) for a, b in arrows if a in group and b in group}
    for k in range(1, len(inner) + 1):
        for cut in itertools.combinations(sorted(inner), k):
            if acyclic(group, inner - set(cut)):
                return k
    return 0


def wing(mod: str) -> str | None:
    for rung in LAYERS:
        for w in rung:
            if mod == w or mod.startswith(w + "."):
                return w
    return None


def rung(mod: str) -> int | None:
    w = wing(mod)
    return None if w is None else next(i for i, r in enumerate(LAYERS) if w in r)


def main() -> None:
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    lines, arrows = collect(repo)
    nodes = sorted(lines)
    groups = circles(nodes, arrows)
    back = sum(feedback_arcs(g, arrows) for g in groups)
    against_layers = sorted(
        (a, b)
        for a, b in arrows
        if rung(a) is not None and rung(b) is not None and rung(a) < rung(b)  # type: ignore[operator]
    )
    across_rung = sorted(
        (a, b)
        for a, b in arrows
        if rung(a) is not None and rung(a) == rung(b) and wing(a) != wing(b)
    )
    biggest = max(lines, key=lambda m: lines[m])
    tasks_modules = [m for m in nodes if m.startswith("tasks")]
    print(f"modules: {len(nodes)} (tasks: {len(tasks_modules)})")
    print(f"import arrows: {len(arrows)}")
    print(f"circles: {len(groups)}")
    for g in groups:
        print("  circle:", " <-> ".join(g))
    print(f"upward arrows (to break the circles): {back}")
    wings_present = (repo / "tasks" / "core").is_dir()
    if wings_present:
        print(f"upward arrows (against the wing layers): {len(against_layers)}")
        for a, b in against_layers:
            print(f"  {a} -> {b}")
        print(f"arrows between wings of one rung: {len(across_rung)}")
        for a, b in across_rung:
            print(f"  {a} -> {b}")
        unplaced = [m for m in nodes if wing(m) is None]
        if unplaced:
            print("modules in no wing:", ", ".join(unplaced))
    over = [f"{m} {lines[m]}" for m in nodes if lines[m] > 400]
    print(f"largest module: {biggest} ({lines[biggest]} lines)")
    print("modules over 400 lines:", ", ".join(over) or "none")


if __name__ == "__main__":
    main()
