"""Atomic file writes shared by every stage: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it over ``path``.

    Readers see either the old file or the complete new one, never a partial write.
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp_path = temp_path(path)
    try:
        yield tmp_path
        publish(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Make a finished temporary file (same folder) durable and rename it over ``path``.

    For writers that learn the final name only at the end (``atomic_path`` is the usual way in).
    """
    tmp, path = Path(tmp), Path(path)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are shared like any file
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A new empty temporary file next to ``path``, named ``.<name>.<random>.tmp`` like ``atomic_path``'s."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def sweep_temps(path: str | os.PathLike[str]) -> int:
    """Remove the temporary files a killed writer of ``path`` left behind; returns how many.

    Only for a caller that owns ``path`` (no other process may be writing it right now).
    """
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_parquet(path: str | os.PathLike[str], frame: pl.DataFrame | pa.Table) -> None:
    """Write a Parquet file atomically, deterministically (no timestamps in the metadata)."""
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
