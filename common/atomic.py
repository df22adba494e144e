"""Atomic writes shared by every stage: a file (temp file in the same folder, fsync, rename) or a set of files."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pawpipe.common.folders import describe, what_is


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
    except OSError as exc:  # a full disk, a write error: say which file, not a temporary name or none
        if exc.filename in (None, str(tmp_path), tmp_path):
            raise OSError(exc.errno, exc.strerror or " ".join(str(exc).split()), str(path)) from exc
        raise
    except RuntimeError as exc:  # torch.save reports a failed write as RuntimeError: name a full disk as such
        if _nearly_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def _nearly_full(folder: Path) -> bool:
    """Whether the filesystem of ``folder`` has less than 1 MiB left (a write that failed there ran out)."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < (1 << 20)


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


# --- Outputs as a set -------------------------------------------------------------------
# A stage that writes several files publishes them together: all of them are written into a
# fresh folder beside OUT, with OUTPUTS_FILE (the tool and each file's size) written last,
# and that folder is swapped in for OUT. Readers check OUTPUTS_FILE (``check_outputs``), so a
# folder whose files come from different runs, or were cut short, is refused.

OUTPUTS_FILE = "outputs.json"


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike[str], *, tool: str) -> Iterator[Path]:
    """Yield a fresh empty folder beside ``out``; on success record its files and swap it in for ``out``.

    On an exception ``out`` is untouched and the staged folder is removed. A crash between the
    two renames of the swap leaves ``out`` absent (never mixed); the next run sweeps the rest.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*.stage"):  # what a killed run left (callers hold out's lock)
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".stage", dir=out.parent))
    try:
        yield stage
        files = {p.name: p.stat().st_size for p in sorted(stage.iterdir()) if p.is_file()}
        write_json(stage / OUTPUTS_FILE, {"tool": tool, "files": files})
        os.chmod(stage, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        _swap_in(stage, out)
    except OSError as exc:  # name the output file the user asked for, not its staged twin
        name = os.fspath(exc.filename) if exc.filename is not None else ""
        if isinstance(name, str) and name.startswith(str(stage) + os.sep):
            raise OSError(exc.errno, exc.strerror, str(out / os.path.relpath(name, stage))) from exc
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _swap_in(stage: Path, out: Path) -> None:
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".stage", dir=out.parent))
        os.replace(out, old)  # old is empty, so a folder can replace it
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out)
    _fsync_dir(out.parent)


def read_outputs(folder: str | os.PathLike[str]) -> dict | None:
    """The folder's ``outputs.json`` (tool and file sizes), or None when it has none."""
    path = Path(folder) / OUTPUTS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: expected the record of a finished output set, got {exc}") from None


def check_outputs(folder: str | os.PathLike[str], *, tool: str, needs: tuple[str, ...]) -> None:
    """Refuse a folder ``tool`` did not finish as one set: files missing, or sizes not the recorded ones.

    A folder without ``outputs.json`` (written by hand, or by an older version) is accepted when
    the files in ``needs`` are there.
    """
    folder = Path(folder)
    record = read_outputs(folder)
    if record is None:
        if not folder.is_dir():
            raise ValueError(
                f"{folder}: expected {describe(tool)} folder, got {'a file' if folder.exists() else 'nothing'}"
            )
        found = what_is(folder)
        if found not in (tool, None, ""):
            raise ValueError(f"{folder}: this is {describe(found)}, not {describe(tool)}")
        missing = [n for n in needs if not (folder / n).is_file()]
        if missing:
            raise ValueError(f"{folder}: expected {', '.join(needs)} from `{tool}`, got no {', '.join(missing)}")
        return
    if record.get("tool") != tool:
        raise ValueError(f"{folder}: this is {describe(record.get('tool'))}, not {describe(tool)}")
    files = record.get("files", {})
    missing = [n for n in needs if n not in files]
    if missing:
        raise ValueError(
            f"{folder}: the last `{tool}` into it wrote no {', '.join(missing)} (it stopped early; see its report)"
        )
    changed = [n for n, size in files.items() if not (folder / n).is_file() or (folder / n).stat().st_size != size]
    if changed:
        raise ValueError(
            f"{folder}: {', '.join(changed)} differ from the set `{tool}` wrote (files from different runs?); rerun "
            f"`{tool}`"
        )
