"""The examples in ``--help`` (``train``, ``shards`` and each subcommand) name files a new user has.

Every path an example names is one of: a file or folder in this repository (``train/demo.toml``);
a path under ``demo/`` that ``make demo`` writes (the Makefile names it as ``$(DEMO)/...``); the
output (``--out``) of an earlier example, or a path inside it; or a placeholder in capitals
(``SHARDS``, ``RUN_DIR/checkpoints/best.pt``). An input file (``--config``) is never an output.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from pawpipe.shards.cli import _parser as shards_parser
from pawpipe.train.cli import _parser as train_parser

REPO = Path(__file__).resolve().parents[2]
PATHLIKE = re.compile(r"[\w.~-]*/[\w./~-]*|[\w.-]+\.(toml|json|parquet|csv|pt|svg|tar)")
OUTPUT_FLAGS = ("--out",)
INPUT_FLAGS = ("--config", "--pretrained", "--resume")


def _helps(parser: argparse.ArgumentParser) -> list[str]:
    """The help text of ``parser`` and of every subcommand's parser."""
    found = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [sub.format_help() for sub in dict.fromkeys(action.choices.values())]
    return found


def example_lines(text: str) -> list[str]:
    """The command lines of each ``examples:`` block of a help text, comments cut off."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.strip() == "examples:":
            inside = True
        elif inside and not line.strip():
            inside = False
        elif inside:
            lines.append(line.split("#", 1)[0].strip())
    return [line for line in lines if line]


def _made_by_make_demo(path: str) -> bool:
    first = "/".join(Path(path).parts[:2])
    return path.startswith("demo/") and f"$(DEMO)/{first.removeprefix('demo/')}" in (REPO / "Makefile").read_text()


def unknown_paths(lines: list[str]) -> list[str]:
    """``LINE: PATH`` for each path of the examples that is none of the kinds in the module docstring."""
    outputs: list[str] = []
    wrong = []
    for line in lines:
        words = shlex.split(line)
        for before, word in zip(["", *words], words):
            if word.startswith("-") or not PATHLIKE.fullmatch(word) or before in OUTPUT_FLAGS:
                continue
            if re.match(r"[A-Z][A-Z_]*(/|$)", word) or (REPO / word).exists():
                continue
            if before not in INPUT_FLAGS and (
                _made_by_make_demo(word) or any(word == o or word.startswith(o + "/") for o in outputs)
            ):
                continue
            wrong.append(f"{line}: {word}")
        outputs += [word for before, word in zip(["", *words], words) if before in OUTPUT_FLAGS]
    return wrong


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "train": train_parser,
    "shards": shards_parser,
}


@pytest.mark.parametrize("tool", sorted(PARSERS))
def test_help_examples_name_files_that_exist(tool: str) -> None:
    helps = _helps(PARSERS[tool]())
    lines = [line for text in helps for line in example_lines(text)]
    assert lines and all(line.startswith(f"{tool} ") for line in lines)
    assert unknown_paths(lines) == []


def test_the_example_check_can_fail() -> None:
    lines = [
        "train run --config demo/train.toml --data demo/shards --out runs/x",
        "train status runs/x",
        "shards build data/clean --out SHARDS",
        "train eval --checkpoint runs/y/best.pt --data RUN_DIR/val",
    ]
    assert unknown_paths(lines) == [
        "train run --config demo/train.toml --data demo/shards --out runs/x: demo/train.toml",
        "shards build data/clean --out SHARDS: data/clean",
        "train eval --checkpoint runs/y/best.pt --data RUN_DIR/val: runs/y/best.pt",
    ]
