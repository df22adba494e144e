"""The import graph: no cycles between modules, and no stage reaching into another stage's insides.

Stages (``ingest``, ``validation_rules``, ``shards``, ``train``) import each other only through the
other stage's package (``from shards import build``: the names its ``__init__`` states as public);
``common`` is the shared layer every stage may use, and it imports no stage.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "validation_rules", "shards", "train")
SHARED = "common"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in (*STAGES, SHARED) for p in (REPO / top).rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports (absolute imports; ``from pkg import name`` counts ``pkg``,
    the package's stated surface; ``from pkg.mod import name`` counts ``pkg.mod.name`` when that is
    a module, else ``pkg.mod``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] in known:
            if "." not in node.module:  # from a package's own namespace: its public surface
                found.add(node.module)
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules() -> None:
    # A package's __init__ importing its own modules is how it states its surface, not a cycle.
    edges = {m: {d for d in deps if not (m.count(".") == 0 or d == m.rsplit(".", 1)[0] or "." not in d)}
             for m, deps in graph().items()}  # fmt: skip
    assert cycles(edges) == []


def test_stages_use_each_other_only_through_their_public_surface() -> None:
    wrong = []
    for module, deps in graph().items():
        top = module.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            if other == top:
                continue
            if top == SHARED and other in STAGES:
                wrong.append(f"{module} -> {dep} (the shared layer imports no stage)")
            elif other in STAGES and dep != other:
                wrong.append(f"{module} -> {dep} (import it from `{other}`, its public surface)")
    assert sorted(wrong) == []


def test_the_checks_can_fail() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
