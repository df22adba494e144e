"""The import graph: no cycles between modules, and no stage reaching into another stage's insides.

Stages (``ingest``, ``validation_rules``, ``shards``, ``train``) import each other only through the
other stage's package (``from shards import build``: the names its ``__init__`` states as public);
``common`` is the shared layer every stage may use, and it imports no stage.

Inside ``train``, the rooms (``train.data``, ``train.fit``, ``train.daemon``, ``train.audit``) and the
top-level modules are layered: each imports only the rooms below it (``TRAIN_ROOMS``).
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


# Each room of train/ (a sub-package, or a module at the top) and the rooms it may import: a layering,
# so no two rooms import each other and a newcomer can read them bottom up.
TRAIN_ROOMS = {
    "train": set(),  # the package's docstring
    "train.config": set(),
    "train.data": {"train.config"},
    "train.daemon": {"train.config"},
    "train.fit": {"train.config", "train.data", "train.daemon"},
    "train.audit": {"train.config", "train.data", "train.fit"},
    "train.plan": {"train.config", "train.data", "train.fit"},
    "train.cli": {"train.config", "train.data", "train.fit", "train.daemon", "train.audit", "train.plan"},
    "train.__main__": {"train.cli"},
}
# Module imports that cross the layering, each with its reason; one left here must still exist.
TRAIN_ROOM_EXCEPTIONS = {
}


def room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def crossings(edges: dict[str, set[str]], rooms: dict[str, set[str]]) -> list[str]:
    """Imports from one room into another that ``rooms`` does not allow, and rooms it does not declare."""
    wrong = []
    for module, deps in edges.items():
        if room(module) not in rooms:
            wrong.append(f"{module}: in no declared room")
            continue
        for dep in deps:
            if room(dep) != room(module) and room(dep) not in rooms[room(module)]:
                wrong.append(f"{module} -> {dep}")
    return sorted(wrong)


def test_the_rooms_of_train_are_layered() -> None:
    edges = {m: {d for d in deps if d.split(".")[0] == "train"} for m, deps in graph().items() if m.split(".")[0] == "train"}
    wrong = crossings(edges, TRAIN_ROOMS)
    assert sorted(set(wrong) - {f"{a} -> {b}" for a, b in TRAIN_ROOM_EXCEPTIONS}) == []
    assert sorted({f"{a} -> {b}" for a, b in TRAIN_ROOM_EXCEPTIONS} - set(wrong)) == []  # no stale exception
    assert cycles(TRAIN_ROOMS) == []


def test_the_room_check_can_fail() -> None:
    rooms = {"p.low": set(), "p.high": {"p.low"}}
    assert crossings({"p.low.a": {"p.high.b"}, "p.high.b": {"p.low.a"}, "p.other": set()}, rooms) == [
        "p.low.a -> p.high.b", "p.other: in no declared room"]  # fmt: skip
