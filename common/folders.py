"""What a folder is, by the files each tool leaves in it, so a command can say so and refuse it."""

from __future__ import annotations

import json
from pathlib import Path

# The files that mark each tool's output folder, first match wins; ``outputs.json`` names its tool.
SIGNATURES = (
    ("shards build", ("dataset.json", "build_config.json")),
    ("train run", ("status.json", "run.json", "train.lock")),
    ("ingest clean", ("manifest.parquet", "clean_config.json", "quarantine.parquet")),
)


def what_is(folder: str | Path) -> str | None:
    """The tool that wrote ``folder`` ("shards build"...), "" for other non-empty content, None when absent or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    try:
        tool = json.loads((folder / "outputs.json").read_text(encoding="utf-8")).get("tool")
        if isinstance(tool, str):
            return tool
    except (OSError, ValueError, AttributeError):
        pass
    for tool, names in SIGNATURES:
        if any((folder / name).exists() for name in names):
            return tool
    return "" if any(not p.name.startswith(".") for p in folder.iterdir()) else None  # hidden: locks, temporaries


_WORDS = {
    "ingest clean": "an `ingest clean` output",
    "shards build": "a `shards build` output",
    "train run": "a `train run` folder",
}


def describe(tool: str | None) -> str:
    """``what_is``'s answer in words: "a `shards build` output"."""
    if tool is None:
        return "an empty folder"
    return _WORDS.get(tool, f"a `{tool}` output") if tool else "a folder of other files"


def check_target(out: str | Path, tool: str, *, overwrite: bool | None = None) -> None:
    """Refuse to write ``tool``'s outputs into ``out`` when it is a file or another tool's folder.

    ``overwrite`` lets a pawpipe tool's folder be replaced (None: the tool has no such option);
    a folder of other files never is.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: expected an output folder, got a file")
    found = what_is(out)
    if found is None or found == tool:
        return
    if found == "":
        raise ValueError(
            f"{out}: expected a new or empty folder (or an earlier `{tool}` output), got {describe(found)}"
        )
    if not overwrite:
        hint = "pass --overwrite to replace it" if overwrite is False else "choose another folder"
        raise ValueError(f"{out}: this is {describe(found)}, not {describe(tool)}; {hint}")
