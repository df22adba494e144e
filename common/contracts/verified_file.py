"""``SHARDS/verified.json``: the files the last passing ``shards verify`` checked, each with the size and
modification time it had then, so that a reader (``train``'s loaders) can tell that a file changed since
and say so (a JPEG corrupted in place keeps the tar's size, not its mtime)::

    {"tool": "shards verify", "verified": "2025-03-02T03:14:02+0000", "decoded": true,
     "files": {"dataset.json": [size, mtime_ns], "train/shards.parquet": [...], "train/shard-000000.tar": [...],
               "train/shard-000000.idx": [...], ...}}

Paths are relative to the shards folder (a moved or ``cp -a``-copied folder stays verified). A verify
that finds a mismatch removes the record: nothing vouches for that folder until one passes again.
Each file is stamped before verify reads it, so a change while it reads shows as a change.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pawpipe.common.atomic import write_json
from pawpipe.common.contracts.dataset_file import DATASET_FILE

VERIFIED_FILE = "verified.json"

Stamp = list[int]  # size, mtime_ns


def stamp(path: Path) -> Stamp:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def record_pass(out: Path, stamps: dict[str, Stamp], *, decoded: bool) -> None:
    """Write the record of a verify of ``out`` that found nothing wrong (``stamps``: relative path -> stamp)."""
    write_json(
        out / VERIFIED_FILE,
        {
            "tool": "shards verify",
            "verified": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "decoded": decoded,
            "files": stamps,
        },
    )


def forget_pass(out: Path) -> None:
    """A verify found a mismatch: ``out`` is vouched for no more."""
    (out / VERIFIED_FILE).unlink(missing_ok=True)


@dataclass(frozen=True)
class SinceVerify:
    """A split folder against the last passing verify of its shards folder."""

    verified: str  # when it passed
    changed: list[str]  # the split's files (and dataset.json) whose size or mtime differ, or that it did not check
    # (hidden files, a killed writer's temporaries, aside)


def since_verify(split_dir: str | Path) -> SinceVerify | None:
    """How the files of ``split_dir`` (``SHARDS/<split>``) and ``SHARDS/dataset.json`` stand against
    the last passing verify; None when no verify passed (or its record is unreadable)."""
    split_dir = Path(split_dir)
    root = split_dir.parent
    try:
        record = json.loads((root / VERIFIED_FILE).read_text(encoding="utf-8"))
        files, verified = dict(record["files"]), str(record["verified"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    changed = []
    for path in [
        root / DATASET_FILE,
        *sorted(p for p in split_dir.iterdir() if p.is_file() and not p.name.startswith(".")),
    ]:
        name = path.relative_to(root).as_posix()
        try:
            now = stamp(path)
        except FileNotFoundError:
            continue
        if files.get(name) != now:
            changed.append(name)
    return SinceVerify(verified=verified, changed=changed)
