"""The shard plan both training loaders follow, and the state they save (see ``train.data.loader``).

* ``ShardSet``: a split's tars and DALI index files, checked when opened (once while they are
  unchanged: ``train.data.check_cache``), and the key -> sample_id map;
* ``EpochPlan``: which samples rank r reads in epoch e (``rank_range``: DALI's partition);
* ``loader_state`` / ``check_state``: the ``state_dict`` both loaders save and the check a resume makes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pawpipe.common.contracts import tar_layout
from pawpipe.common.contracts.shard_tables import SAMPLES_FILE, SHARDS_FILE
from pawpipe.common.contracts.tar_layout import INDEX_VERSION, index_path, member_name
from pawpipe.common.contracts.verified_file import since_verify
from pawpipe.train.data.check_cache import PassedChecks, check_code, stamp
from pawpipe.train.data.transforms import TransformSpec

log = logging.getLogger(__name__)

STATE_FORMAT = 1
_TAR_HEADER = 512


@dataclass(frozen=True)
class ShardFile:
    name: str  # tar file name, e.g. shard-000007.tar
    path: Path
    index: Path  # the DALI (wds2idx v1.2) index beside it
    samples: int
    bytes: int


@dataclass(frozen=True)
class Piece:
    """Samples ``[start, stop)`` (positions in tar order) of one shard."""

    shard: ShardFile
    start: int
    stop: int


@dataclass(frozen=True)
class EpochPlan:
    """The shards in reading order for one epoch, and this rank's range of their concatenated samples."""

    epoch: int
    shards: list[ShardFile]
    start: int
    stop: int

    @property
    def samples(self) -> int:
        return self.stop - self.start

    def pieces(self, start: int | None = None, stop: int | None = None) -> list[Piece]:
        """The samples ``[start, stop)`` (default: this rank's range) as pieces of shards, in reading order."""
        start = self.start if start is None else start
        stop = self.stop if stop is None else stop
        out, offset = [], 0
        for shard in self.shards:
            lo, hi = max(start, offset), min(stop, offset + shard.samples)
            if lo < hi:
                out.append(Piece(shard, lo - offset, hi - offset))
            offset += shard.samples
        return out


@dataclass
class ShardSet:
    """One split folder written by ``shards build``, checked when opened.

    Each shard is checked (``check_shard``) unless it passed at an earlier open and neither its
    files nor the split's tables have changed since (``train.data.check_cache``); ``checked``
    counts the shards this open checked.
    """

    split_dir: Path
    shards: list[ShardFile]
    key_to_id: dict[str, str] = field(default_factory=dict)  # only keys that differ from their sample_id
    mean_encoded_bytes: float = 0.0
    checked: int = 0

    @property
    def total(self) -> int:
        return sum(s.samples for s in self.shards)

    @classmethod
    def open(cls, split_dir: str | Path) -> ShardSet:
        split_dir = Path(split_dir)
        if not split_dir.is_dir():
            raise FileNotFoundError(
                f"{split_dir}: no such split folder; expected SHARDS/<split> written by `shards build`"
            )
        table_path = split_dir / SHARDS_FILE
        samples_path = split_dir / SAMPLES_FILE
        for path in (table_path, samples_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; expected a complete `shards build` output in {split_dir}")
        passes = PassedChecks(split_dir, [table_path, samples_path], version=_check_version())  # stamped before reading
        table = pl.read_parquet(table_path, columns=["shard", "samples", "bytes"]).sort("shard")
        samples = pl.read_parquet(samples_path, columns=["sample_id", "key", "shard"])
        per_shard = dict(samples.group_by("shard").len().iter_rows())
        keys: dict[str, list[str]] | None = None  # built at the first shard that needs its check
        shards, checked = [], 0
        try:
            for name, count, size in table.iter_rows():
                tar = split_dir / name
                shard = ShardFile(name=name, path=tar, index=index_path(tar), samples=count, bytes=size)
                if per_shard.get(name, 0) != count:
                    raise ValueError(
                        f"{samples_path}: {per_shard.get(name, 0)} samples in {name}, but shards.parquet says {count}"
                    )
                taken = time.time_ns()
                try:
                    stamps = [stamp(shard.path), stamp(shard.index)]
                except OSError:
                    stamps = None  # a file missing: check_shard says which
                if stamps is None or not passes.holds(name, stamps):
                    if keys is None:
                        keys = dict(samples.group_by("shard").agg("key").iter_rows())
                    check_shard(shard, keys.get(name, []))
                    checked += 1
                    if stamps is not None:
                        passes.passed(name, stamps, taken)
                shards.append(shard)
        finally:
            passes.save()  # the shards that passed before a failing one stay remembered
        if not shards or sum(s.samples for s in shards) == 0:
            raise ValueError(f"{table_path}: expected at least one shard with samples, found none")
        log.info(
            "%s: checked %d of %d shards; the others are unchanged since they passed (%s)",
            split_dir,
            checked,
            len(shards),
            passes.path,
        )
        _say_since_verify(split_dir)
        differ = samples.filter(pl.col("key") != pl.col("sample_id"))
        key_to_id = dict(zip(differ["key"].to_list(), differ["sample_id"].to_list()))
        mean_bytes = float(table["bytes"].sum()) / max(int(table["samples"].sum()), 1)
        return cls(
            split_dir=split_dir, shards=shards, key_to_id=key_to_id, mean_encoded_bytes=mean_bytes, checked=checked
        )

    def sample_id(self, key: str) -> str:
        return self.key_to_id.get(key, key)

    def image_paths(self) -> dict[str, str]:
        """sample_id -> ``image_path`` (the manifest's, relative to the dataset root) of every sample of the
        split, from each sample's ``.json`` member (one read per sample, at the offset its index gives)."""
        paths: dict[str, str] = {}
        for shard in self.shards:
            lines = shard.index.read_text(encoding="ascii").splitlines()[1:]
            with open(shard.path, "rb") as tar:
                for line in lines:
                    fields = line.split()
                    members = {fields[i]: (int(fields[i + 1]), int(fields[i + 2])) for i in range(0, len(fields), 4)}
                    key = index_keys([line])[0]
                    try:
                        offset, size = members[tar_layout.JSON]
                        tar.seek(offset)
                        doc = json.loads(tar.read(size))
                        paths[doc["sample_id"]] = doc["image_path"]
                    except (KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                        raise ValueError(
                            f"{shard.path}: key {key}: expected a .json member with sample_id and image_path, "
                            f"got {type(exc).__name__}: {exc}; run `shards verify {self.split_dir.parent}`"
                        ) from None
        return paths

    def plan(self, epoch: int, *, seed: int, shuffle: bool, rank: int, world_size: int) -> EpochPlan:
        """Shard order of ``epoch`` (drawn from ``(seed, epoch)`` when shuffling) and ``rank``'s range."""
        order = list(self.shards)
        if shuffle:
            perm = np.random.default_rng([seed, epoch]).permutation(len(order))
            order = [order[i] for i in perm]
        start, stop = rank_range(self.total, rank, world_size)
        return EpochPlan(epoch=epoch, shards=order, start=start, stop=stop)

    def batches(self, *, train: bool, batch_size: int, rank: int, world_size: int) -> int:
        """Batches per epoch on ``rank``: full batches only, the same on every rank (train); every sample once
        (eval)."""
        if train:
            return (self.total // world_size) // batch_size
        start, stop = rank_range(self.total, rank, world_size)
        return -(-(stop - start) // batch_size)


def _say_since_verify(split_dir: Path) -> None:
    """A warning when the split's files changed since ``shards verify`` last passed (a JPEG corrupted in
    place keeps its shard's size, so the check at open cannot see it; the verify's record can)."""
    found = since_verify(split_dir)
    root = split_dir.parent
    if found is None:
        log.info("%s: no passing `shards verify` on record; `shards verify %s` decodes every sample", split_dir, root)
    elif found.changed:
        n = len(found.changed)
        log.warning(
            "%s: %d file%s changed since `shards verify` passed at %s: %s; run `shards verify %s` before trusting it",
            split_dir,
            n,
            "" if n == 1 else "s",
            found.verified,
            ", ".join(found.changed[:5]) + (", ..." if n > 5 else ""),
            root,
        )


def undecodable(
    tar: str | Path, key: str, exc: BaseException, *, sample_id: str | None = None, also: str = ""
) -> ValueError:
    """The one line both loaders stop with when a sample's image does not decode: its bytes changed after
    the build (the shards were checked then), so ``shards verify`` is the way to find every damaged one."""
    reason = (
        re.sub(r" <_io\.\w+ object at 0x[0-9a-f]+>", "", str(exc)) or type(exc).__name__
    )  # PIL names its buffer object
    who = f"key {key}" + (f" (sample_id {sample_id})" if sample_id is not None else "")
    return ValueError(
        f"{tar}: {who}: cannot decode {member_name(key, tar_layout.JPG)}: {reason}{also}; the shard changed after "
        f"it was built: `shards verify {Path(tar).parent.parent}` names every damaged sample"
    )


def rank_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank's contiguous range of ``total`` samples: DALI's ``shard_id``/``num_shards`` partition."""
    return total * rank // world_size, total * (rank + 1) // world_size


def check_shard(shard: ShardFile, keys: list[str] | None = None) -> None:
    """Raise unless the tar and its index exist and still match ``shards.parquet`` and each other.

    Checks: both files exist; the tar's size is the one recorded at build time; the index's
    header counts the recorded samples; every member of every index line is named
    ``<key>.<ext>`` with a plain sample key (never ``../x`` or ``/etc/x``) and has that name in
    the tar header just before its offset (one 100-byte read per member: an edited entry, or a
    tar rewritten after its index, fails this); the keys are those ``samples.parquet`` lists for
    the shard (``keys``). The index is written after the tar, so an index older than its tar is
    reported as stale in the message.
    """
    for path, what in ((shard.path, "tar"), (shard.index, "index")):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: {what} file missing (listed in shards.parquet); rebuild with `shards build`"
            )
    size = shard.path.stat().st_size
    if size != shard.bytes:
        raise ValueError(
            f"{shard.path}: size {size} bytes, expected {shard.bytes} (shards.parquet): the tar changed after the build"
        )
    with open(shard.index, "rb") as handle:
        lines = handle.read().decode("ascii", "replace").splitlines()
    try:
        version, count = lines[0].split()
        count_ok = int(count) == shard.samples == len(lines) - 1
    except (ValueError, IndexError):
        version, count_ok = "", False
    if version != INDEX_VERSION or not count_ok:
        problem = (
            f"header {lines[0] if lines else ''!r} and {len(lines) - 1} sample lines, expected '{INDEX_VERSION} "
            f"{shard.samples}'"
        )
    else:
        problem = _entries_mismatch(shard.path, lines[1:], size, keys)
    if problem:
        stale = shard.index.stat().st_mtime < shard.path.stat().st_mtime
        raise ValueError(
            f"{shard.index}: {'stale' if stale else 'wrong'} index for {shard.name}: {problem}"
            f"{' (the index is older than its tar)' if stale else ''}; rebuild the shard with `shards build`"
        )


@functools.cache
def _check_version() -> str:
    """The version of the check a remembered pass must carry: the source of this module and of the tar layout."""
    return check_code(Path(__file__), Path(tar_layout.__file__))


_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a sample key: a plain file stem, no folder, no '..' prefix


def index_keys(lines: list[str]) -> list[str]:
    """The sample key of each index line (``<ext> <offset> <size> <key>.<ext>`` groups)."""
    keys = []
    for line in lines:
        fields = line.split()
        keys.append(fields[3][: -len(fields[0]) - 1] if len(fields) >= 4 else "")
    return keys


def read_index_keys(shard: ShardFile) -> list[str]:
    """The sample keys of a shard in tar order, from its index."""
    with open(shard.index, "rb") as handle:
        return index_keys(handle.read().decode("ascii", "replace").splitlines()[1:])


def _entries_mismatch(tar_path: Path, lines: list[str], size: int, keys: list[str] | None) -> str | None:
    """None when every index line's members are well named, lie back to back in the tar as a tar
    writer puts them, and each sample's first member has its name in the tar header; and the keys
    are ``keys``. One 100-byte read per sample; the layout is checked with arrays, not per member."""
    found, firsts, offsets, lengths, names = [], [], [], [], []
    for line in lines:
        fields = line.split()
        if not fields or len(fields) % 4:
            return f"index line {line[:80]!r} is not '<ext> <offset> <size> <name>' groups"
        ext, name = fields[0], fields[3]
        key = name[: -len(ext) - 1] if name.endswith("." + ext) else ""
        if not _KEY.fullmatch(key):
            return f"member {name[:80]}: expected a sample key (letters, digits, '_', '-', '.') then '.{ext}'"
        for i in range(4, len(fields), 4):
            if fields[i + 3] != member_name(key, fields[i]):
                return (
                    f"member {fields[i + 3][:80]}: expected {member_name(key, fields[i])}, the sample's other members' "
                    "key"
                )
        found.append(key)
        firsts.append((len(offsets), name))
        offsets += fields[1::4]
        lengths += fields[2::4]
        names += fields[3::4]
    try:
        starts, sizes = np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64)
    except ValueError:
        return "offsets and sizes must be integers"
    # Member data start after a 512-byte header; the next header follows the data padded to 512.
    expected = np.empty_like(starts)
    expected[0] = _TAR_HEADER
    expected[1:] = starts[:-1] + -(-sizes[:-1] // _TAR_HEADER) * _TAR_HEADER + _TAR_HEADER
    if len(starts) and (bad := np.flatnonzero((starts != expected) | (starts + sizes > size))).size:
        i = int(bad[0])
        return (
            f"member {names[i]} at offset {starts[i]} (+{sizes[i]} bytes): expected offset {expected[i]}, "
            f"where the member before it ends in the {size}-byte tar"
        )
    fd = os.open(tar_path, os.O_RDONLY)
    try:
        for i, name in firsts:
            stored = os.pread(fd, 100, int(starts[i]) - _TAR_HEADER).split(b"\0", 1)[0].decode("utf-8", "replace")
            if stored != name:
                return f"expected member {name} at offset {starts[i]}, the tar has {stored!r} there"
    finally:
        os.close(fd)
    if keys is not None and sorted(found) != sorted(keys):
        listed = set(keys)
        stranger = next((k for k in found if k not in listed), None)
        if stranger is not None:
            return f"sample keys differ from samples.parquet: {stranger!r} not listed"
        return f"sample keys differ from samples.parquet: {next(k for k in keys if k not in set(found))!r} missing"
    return None


# --- state shared by both loaders ---------------------------------------------------------------


def loader_state(
    backend: str, *, spec: TransformSpec, epoch: int, position: int, settings: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The ``state_dict`` both loaders return: where they are, and the settings a resume must share."""
    return {
        "format": STATE_FORMAT,
        "backend": backend,
        "train": spec.train,
        "epoch": epoch,
        "position": position,
        **settings,
        **extra,
    }


def check_state(
    state: dict[str, Any], backend: str, *, spec: TransformSpec, settings: dict[str, Any]
) -> tuple[int, int]:
    """Validate a saved state against this loader; returns (epoch, position)."""
    if state.get("format") != STATE_FORMAT or state.get("backend") != backend:
        raise ValueError(
            f"loader state: saved by the {state.get('backend')!r} loader (format {state.get('format')}), "
            f"this is the {backend!r} loader (format {STATE_FORMAT}); resume with the same --loader"
        )
    expected = {"train": spec.train, **settings}
    for name, value in expected.items():
        if state.get(name) != value:
            raise ValueError(f"loader state: saved with {name}={state.get(name)!r}, this loader has {name}={value!r}")
    return int(state["epoch"]), int(state["position"])
