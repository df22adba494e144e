"""Reproducible WebDataset tars with their DALI index, written atomically.

The members and the index are the tar layout contract (``common.contracts.tar_layout``). Every
member has fixed metadata (mtime 0, uid/gid 0, no user names, mode 0444) and a USTAR header, so
the same samples always give the same bytes. The index lets DALI's
``fn.readers.webdataset(index_paths=...)`` start without scanning the tar.

A planned shard is written as one tar, or, when the next sample would push the tar past
``max_bytes``, as several parts: ``shard-000007.tar``, ``shard-000007_1.tar``, ... A part
always holds at least one sample. Files are written under a per-process temporary name,
fsynced, and renamed into place (index first, then tar): a reader never sees half a tar.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from pawpipe.common.contracts.tar_layout import (
    INDEX_VERSION,
    MEMBERS,
    TAR_SUFFIX,
    index_entry,
    index_path,
    member_key,
    member_name,
)

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


def part_name(planned: str, part: int) -> str:
    return f"{planned}{TAR_SUFFIX}" if part == 0 else f"{planned}_{part}{TAR_SUFFIX}"


@dataclass
class PartInfo:
    shard: str  # tar file name
    samples: int
    bytes: int
    sha256: str
    keys: list[str] = field(default_factory=list)


class _HashingFile:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def finish(self) -> tuple[int, str]:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._size, self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o444, 0, 0, "", ""
    return info


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


class ShardWriter:
    """Write the samples of one planned shard into ``folder`` as one or more tar parts."""

    def __init__(self, folder: str | Path, planned: str, *, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.planned = planned
        self.max_bytes = max_bytes
        self.parts: list[PartInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._file: _HashingFile | None = None
        self._index: list[str] = []
        self._keys: list[str] = []
        self._tmp: Path | None = None
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, key: str, members: dict[str, bytes]) -> str:
        """Append one sample; returns the tar name it went to."""
        size = sum(_BLOCK + _padded(len(members[ext])) for ext in MEMBERS)
        if self._tar is not None and self._keys and self._final_size(self._tar.offset + size) > self.max_bytes:
            self._close_part()
        if self._tar is None:
            self._open_part()
        entries = []
        for ext in MEMBERS:
            data = members[ext]
            name = member_name(key, ext)
            header = self._tar.offset
            self._tar.addfile(_member(name, len(data)), io.BytesIO(data))
            entries.append(index_entry(ext, header + _BLOCK, len(data), name))
        self._index.append(" ".join(entries))
        self._keys.append(key)
        return part_name(self.planned, len(self.parts))

    def close(self) -> list[PartInfo]:
        """Finish the last part; returns every part written (none when no sample was added)."""
        if self._tar is not None:
            self._close_part()
        return self.parts

    def abort(self) -> None:
        """Drop the part being written (finished parts stay: a rerun rewrites them identically)."""
        if self._file is not None:
            self._file.discard()
        for tmp in self.folder.glob(f".{self.planned}*.{os.getpid()}.partial"):
            tmp.unlink(missing_ok=True)
        self._tar = self._file = self._tmp = None

    @staticmethod
    def _final_size(payload: int) -> int:
        return -(-(payload + 2 * _BLOCK) // _RECORD) * _RECORD  # end-of-archive blocks, record padding

    def _open_part(self) -> None:
        name = part_name(self.planned, len(self.parts))
        self._tmp = self.folder / f".{name}.{os.getpid()}.partial"
        self._file = _HashingFile(self._tmp)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)  # type: ignore[arg-type]
        self._index, self._keys = [], []

    def _close_part(self) -> None:
        assert self._tar is not None and self._file is not None and self._tmp is not None
        self._tar.close()
        size, digest = self._file.finish()
        name = part_name(self.planned, len(self.parts))
        final = self.folder / name
        idx_tmp = self.folder / f".{index_path(name).name}.{os.getpid()}.partial"
        with open(idx_tmp, "w", encoding="ascii", newline="\n") as handle:
            handle.write(index_text(self._index))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(idx_tmp, index_path(final))
        os.replace(self._tmp, final)
        self.parts.append(PartInfo(shard=name, samples=len(self._keys), bytes=size, sha256=digest, keys=self._keys))
        self._tar = self._file = self._tmp = None


def index_text(lines: list[str]) -> str:
    return f"{INDEX_VERSION} {len(lines)}\n" + "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # of the data
    size: int


def scan_tar(path: str | Path) -> list[Member]:
    """Every regular member of a tar with its data offset, read from the headers (for ``verify``)."""
    members = []
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if not info.isreg():
                raise ValueError(f"{path}: member {info.name!r} is not a regular file")
            members.append(Member(info.name, info.offset_data, info.size))
    return members


def expected_index(members: list[Member]) -> tuple[str, list[tuple[str, list[Member]]]]:
    """The wds2idx text for a tar's members, and the members grouped by sample key."""
    samples: list[tuple[str, list[Member]]] = []
    for member in members:
        key = member_key(member.name)
        if not samples or samples[-1][0] != key:
            samples.append((key, []))
        samples[-1][1].append(member)
    lines = [
        " ".join(index_entry(m.name[len(key) + 1 :], m.offset, m.size, m.name) for m in group) for key, group in samples
    ]
    return index_text(lines), samples
