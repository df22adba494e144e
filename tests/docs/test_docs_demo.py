"""docs/train.md lists the commands of ``make demo`` exactly as the Makefile's ``demo`` target runs them.

The ``demo`` recipe's commands, with ``$(BIN)/`` dropped and ``$(DEMO)`` read as ``demo`` (the
recipe's ``rm -rf``, comments and closing ``@echo`` are not pipeline steps), must equal, in order,
the lines of the ``bash`` block in train.md's ``## Demo`` section.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def demo_recipe(makefile: str) -> list[str]:
    lines = makefile.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^demo\s*:", line))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        command = line.strip()
        if command.startswith(("#", "@echo", "rm -rf")):
            continue
        commands.append(command.replace("$(BIN)/", "").replace("$(DEMO)", "demo"))
    return commands


def documented_demo(page: str) -> list[str]:
    section = page.split("\n## Demo\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "train.md's Demo section: expected a bash block with make demo's commands"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_train_md_lists_make_demo_exactly() -> None:
    recipe = demo_recipe((REPO / "Makefile").read_text(encoding="utf-8"))
    assert recipe and recipe[0].startswith("ingest demo-data demo/raw")  # the recipe was found
    assert documented_demo((REPO / "docs" / "train.md").read_text(encoding="utf-8")) == recipe
