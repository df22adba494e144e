"""Every command the documentation shows runs, against the demo data.

The convention: a fenced block marked ``console`` in ``docs/*.md`` holds runnable examples.
A line starting with ``$ `` is a command; a command line ending in ``\\`` continues on the
next line; every other line of the block is output shown to the reader and is not checked.
Blocks marked ``bash``, ``text``, ``toml``... are illustrations (GPU-only, several machines,
a daemon that runs forever) and are not run.

The demo data is built once, as the Makefile does (``ingest demo-data demo/raw``, ``ingest
clean``, ``shards build``), together with the folders ``docs/your-data.md`` shows, and the
one-epoch run of ``train.md`` when a page starts from a finished run. Each page
then runs in a fresh working folder holding what a reader has at that point (the raw demo for
``ingest.md``, its clean output for ``shards.md``, ...), its commands in page order, each
with ``bash -c`` and the project's environment first on ``PATH``, as written: nothing is
substituted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _example_data import make_all

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent  # the environment's bin/ (not resolved: a venv's python is a link)
COMMAND_TIMEOUT_S = 900

# What each page starts from, as paths under the prepared folder; pages not listed get all of
# the demo (raw, clean, shards) and train/demo.toml.
DEMO = ("demo/raw", "demo/clean", "demo/shards", "train")
STARTS_FROM = {
    "ingest.md": ("demo/raw",),
    "shards.md": ("demo/raw", "demo/clean"),
    "your-data.md": ("demo/raw", "train", "pets-coco", "pets-voc", "pets-yolo", "pets-table"),
    "audit.md": (*DEMO, "demo/runs"),
    "diet.md": (*DEMO, "demo/runs"),
}
# The one-epoch run train.md shows, for the pages that start from a finished run.
DEMO_RUN = "train run --config train/demo.toml --data demo/shards --epochs 1 --set data.image_size=32"

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


def console_commands(text: str) -> list[str]:
    """The ``$ `` commands of a page's ``console`` blocks, in order, continuation lines joined."""
    commands: list[str] = []
    fence = None  # (marker, language, indent) of the open block
    pending: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence = (match.group(2), match.group(3), len(match.group(1)))
            continue
        if match and match.group(2).startswith(fence[0]) and not match.group(3):
            if pending is not None:
                raise ValueError(f"line {number}: the block ends inside a command continued with '\\'")
            fence = None
            continue
        if fence[1] != "console":
            continue
        if line[: fence[2]].isspace():
            line = line[fence[2] :]  # a block inside a list item is indented with it
        if pending is not None:
            pending.append(line)
        elif line.startswith("$ "):
            pending = [line[2:]]
        else:
            continue  # output shown to the reader
        if not line.endswith("\\"):
            commands.append("\n".join(pending))
            pending = None
    if fence is not None:
        raise ValueError("a fenced block is not closed")
    return commands


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "120"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )


def _must(command: str, cwd: Path) -> None:
    result = _run(command, cwd)
    if result.returncode != 0:
        pytest.fail(f"preparing the demo: `{command}` exited {result.returncode}\n{result.stderr[-4000:]}")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the demo pipeline's first stages, train/demo.toml and the your-data folders."""
    root = tmp_path_factory.mktemp("docs")
    (root / "train").mkdir()
    shutil.copyfile(REPO / "train" / "demo.toml", root / "train" / "demo.toml")
    _must("ingest demo-data demo/raw", root)
    _must("ingest clean demo/raw --out demo/clean --quiet", root)
    _must("shards build demo/clean --out demo/shards --size 96 --max-samples 64", root)
    make_all(root)
    return root


@pytest.fixture(scope="module")
def demo_run(prepared: Path) -> Path:
    """``demo/runs/demo`` in the prepared folder: the tiny run of train.md, made only when a page needs it."""
    _must(DEMO_RUN, prepared)
    return prepared / "demo" / "runs" / "demo"


def _workdir(prepared: Path, page: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    for rel in STARTS_FROM.get(page.name, DEMO):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(prepared / rel, work / rel, symlinks=True)
    return work


def test_console_commands_reads_the_convention() -> None:
    page = "\n".join(
        [
            "```console",
            "$ ingest clean demo/raw \\",
            "      --out demo/clean",
            "records in 305",
            "```",
            "```bash",
            "$ torchrun --nnodes 2 -m train run",
            "```",
            "````console",
            "$ shards verify demo/shards",
            "````",
            "- a list item:",
            "  ```console",
            "  $ train status demo/runs/demo",
            "  ```",
        ]
    )
    assert console_commands(page) == [
        "ingest clean demo/raw \\\n      --out demo/clean",
        "shards verify demo/shards",
        "train status demo/runs/demo",
    ]
    with pytest.raises(ValueError, match="inside a command"):
        console_commands("```console\n$ ls \\\n```")


def test_console_blocks_parse() -> None:
    """Every page's console blocks are well formed (a fast check of the convention)."""
    for page in _pages():
        console_commands(page.read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_docs_commands_run(page: Path, prepared: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    commands = console_commands(page.read_text(encoding="utf-8"))
    if not commands:
        pytest.skip(f"docs/{page.name} shows no console commands")
    if "demo/runs" in STARTS_FROM.get(page.name, DEMO):
        request.getfixturevalue("demo_run")
    work = _workdir(prepared, page, tmp_path)
    for command in commands:
        result = _run(command, work)
        if result.returncode != 0:
            pytest.fail(
                f"docs/{page.name}: `{command}` exited {result.returncode}\n"
                f"stderr:\n{result.stderr[-4000:]}\nstdout:\n{result.stdout[-2000:]}"
            )
