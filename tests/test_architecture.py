"""The import graph: no cycles, the stages in their order, and no stage reaching into another's insides.

The layers, bottom up: ``common`` < ``validation_rules`` < ``ingest`` < ``shards`` < ``train``. A
module imports only its own layer and the layers below it, and another stage only through that
stage's package face (``from shards import build_shards``: a name its ``__init__`` states as
public), never a module inside it (``from shards import worker``, ``from shards.worker import x``,
``import shards.worker``). ``common`` is the shared layer: its modules are imported by name.

The code imports the layers by their installed name (``pawpipe.shards``); the checks speak of the
folders (``shards``), the name without its ``pawpipe.`` prefix. The graph is read from the source
(``ast``): absolute and relative imports, at the top of a module or
inside a function. A name taken from a package face is followed to the module that defines it (the
face re-exports it), so an import cycle that runs through a face is a cycle here too.

Inside ``train``, the rooms (``train.data``, ``train.fit``, ``train.rundir``, ``train.daemon``,
``train.audit``) and the top-level modules are layered: each imports only the rooms below it
(``TRAIN_ROOMS``). Each check is shown failing on a small fake tree (the ``*_can_fail`` tests).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("common", "validation_rules", "ingest", "shards", "train")
SHARED = "common"
NAMESPACE = "pawpipe."  # the installed name of every layer (pyproject.toml); the graph is drawn without it


def _local(module: str) -> str:
    """``pawpipe.train.fit`` -> ``train.fit``: the module's folder path, the name the checks speak in."""
    return module.removeprefix(NAMESPACE)


@dataclass(frozen=True)
class Import:
    """One import of a project module: ``source`` imports ``written`` (the module the statement names,
    or the submodule it takes) and thereby ``defined`` (where the name is defined, through faces)."""

    source: str
    written: str
    defined: str


class Tree:
    """The project modules under ``root`` (the top packages ``layers``) and their imports."""

    def __init__(self, root: Path = REPO, layers: tuple[str, ...] = LAYERS) -> None:
        self.layers = layers
        self.known = {self._name(root, p): p for top in layers for p in sorted((root / top).rglob("*.py"))}
        self._parse = cache(lambda name: ast.parse(self.known[name].read_text(encoding="utf-8")))

    @staticmethod
    def _name(root: Path, path: Path) -> str:
        parts = list(path.relative_to(root).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def _is_package(self, name: str) -> bool:
        return name in self.known and self.known[name].name == "__init__.py"

    def statements(self, name: str) -> list[tuple[str, str | None, str | None]]:
        """(absolute module, imported name or None, alias) of each project import in module ``name``."""
        out = []
        for node in ast.walk(self._parse(name)):
            if isinstance(node, ast.Import):
                out += [
                    (_local(a.name), None, a.asname) for a in node.names if _local(a.name).split(".")[0] in self.layers
                ]
            elif isinstance(node, ast.ImportFrom):
                module = _local(node.module or "")
                if node.level:  # relative: against the module's package
                    package = name if self._is_package(name) else name.rpartition(".")[0]
                    parts = package.split(".")
                    module = ".".join([*parts[: len(parts) - node.level + 1], *([module] if module else [])])
                if module.split(".")[0] in self.layers:
                    out += [(module, a.name, a.asname) for a in node.names]
        return out

    def defined(self, module: str, attr: str | None, seen: frozenset[str] = frozenset()) -> str:
        """The module behind ``from module import attr``: a submodule, or the module a face re-exports it from."""
        if attr is None:
            return module
        if f"{module}.{attr}" in self.known:
            return f"{module}.{attr}"
        if self._is_package(module) and module not in seen:
            for source, imported, alias in self.statements(module):
                if imported is not None and (alias or imported) == attr:
                    return self.defined(source, imported, seen | {module})
        return module

    def imports(self) -> list[Import]:
        out = []
        for name in self.known:
            for module, attr, _ in self.statements(name):
                written = f"{module}.{attr}" if attr and f"{module}.{attr}" in self.known else module
                defined = self.defined(module, attr)
                if defined != name:
                    out.append(Import(name, written, defined))
        return out

    def edges(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {name: set() for name in self.known}
        for i in self.imports():
            if i.defined in self.known:
                out[i.source].add(i.defined)
        return out


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


def stage_violations(tree: Tree) -> list[str]:
    """Imports of a later stage, and imports of another stage's insides (not through its face)."""
    wrong = set()
    for i in tree.imports():
        top, other = i.source.split(".")[0], i.written.split(".")[0]
        if other == top:
            continue
        if tree.layers.index(other) > tree.layers.index(top):
            wrong.add(f"{i.source} -> {i.written} ({other} comes after {top})")
        elif other != SHARED and i.written != other:
            wrong.add(f"{i.source} -> {i.written} (import it from `{other}`, its public surface)")
    return sorted(wrong)


def test_no_import_cycles_between_modules() -> None:
    assert cycles(Tree().edges()) == []


def test_stages_import_lower_stages_only_through_their_public_surface() -> None:
    assert stage_violations(Tree()) == []


def test_nothing_that_cleans_data_imports_the_demo() -> None:
    users = sorted(
        {
            i.source
            for i in Tree().imports()
            if i.defined.startswith("ingest.demo") and not i.source.startswith("ingest.demo")
        }
    )
    assert users == ["ingest.cli"]


def _fake(tmp_path: Path, files: dict[str, str]) -> Tree:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Tree(tmp_path, ("common", "low", "high"))


def test_the_stage_check_can_fail(tmp_path: Path) -> None:
    tree = _fake(
        tmp_path,
        {
            "common/__init__.py": "",
            "common/util.py": "import high\n",
            "low/__init__.py": "from low.impl import thing\n",
            "low/impl.py": "from common.util import x\nthing = 1\n",
            "low/worker.py": "",
            "low/other.py": "",
            "high/__init__.py": "",
            "high/a.py": "from low import thing\nfrom low import worker\n",
            "high/b.py": "from low.impl import thing\n",
            "high/c.py": "import low.other\n",
            "high/d.py": "def f():\n    from ..low import impl\n",
        },
    )
    assert stage_violations(tree) == [
        "common.util -> high (high comes after common)",
        "high.a -> low.worker (import it from `low`, its public surface)",
        "high.b -> low.impl (import it from `low`, its public surface)",
        "high.c -> low.other (import it from `low`, its public surface)",
        "high.d -> low.impl (import it from `low`, its public surface)",  # relative, inside a function
    ]


def test_the_cycle_check_can_fail(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    # relative imports, and a cycle through a package face (high.b takes `thing` from low's face)
    tree = _fake(
        tmp_path,
        {
            "common/__init__.py": "",
            "low/__init__.py": "from .impl import thing as thing\n",
            "low/impl.py": "from . import helper\nthing = 1\n",
            "low/helper.py": "def f():\n    from .impl import thing\n",
            "high/__init__.py": "",
            "high/b.py": "from low import thing\n",
        },
    )
    assert tree.edges()["high.b"] == {"low.impl"}
    assert cycles(tree.edges()) == [["low.helper", "low.impl"]]


# Each room of train/ (a sub-package, or a module at the top) and the rooms it may import: a layering,
# so no two rooms import each other and a newcomer can read them bottom up.
TRAIN_ROOMS = {
    "train": set(),  # the package's docstring
    "train.config": set(),
    "train.data": {"train.config"},
    "train.rundir": {"train.config"},
    "train.daemon": {"train.config", "train.rundir"},
    "train.fit": {"train.config", "train.data", "train.rundir"},
    "train.audit": {"train.config", "train.data", "train.fit"},
    "train.plan": {"train.config", "train.data", "train.fit"},
    "train.cli": {
        "train.config",
        "train.data",
        "train.fit",
        "train.rundir",
        "train.daemon",
        "train.audit",
        "train.plan",
    },
    "train.__main__": {"train.cli"},
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
    edges = {
        m: {d for d in deps if d.split(".")[0] == "train"}
        for m, deps in Tree().edges().items()
        if m.split(".")[0] == "train"
    }
    assert crossings(edges, TRAIN_ROOMS) == []
    assert cycles(TRAIN_ROOMS) == []


def test_the_room_check_can_fail() -> None:
    rooms = {"p.low": set(), "p.high": {"p.low"}}
    assert crossings({"p.low.a": {"p.high.b"}, "p.high.b": {"p.low.a"}, "p.other": set()}, rooms) == [
        "p.low.a -> p.high.b",
        "p.other: in no declared room",
    ]
