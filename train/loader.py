"""The training loader's front door, and the shard plan both loaders follow.

``build_loader`` opens a ``SHARDS/<split>`` folder and returns the DALI loader
(``train.loader_dali``) or its plain-PyTorch twin (``train.loader_torch``); both implement
``train.batch.Loader`` with the same transforms (``train.transforms``) and the same plan:

* ``ShardSet``: the split's tars and DALI index files, checked when opened (missing files, a tar
  or index that no longer matches ``shards.parquet``, a stale index), and the key -> sample_id map.
* ``EpochPlan``: which samples rank r reads in epoch e. Training visits the shards in an order
  drawn from ``(seed, epoch)`` (the same on every rank); the concatenated samples are cut into
  ``world_size`` contiguous ranges, ``[N*r//W, N*(r+1)//W)``, the partition DALI's
  ``shard_id/num_shards`` makes, so the ranks' samples are disjoint and complete. Training yields
  ``(N // W) // batch_size`` full batches on every rank (the same count everywhere, so no rank
  waits at the epoch's end; the partial last batch is dropped, the users' NaN lesson);
  evaluation reads the shards in name order and yields each of the rank's samples once, the last
  batch possibly partial (the model is in eval mode then, so BatchNorm never sees a batch of one
  in train mode).

Failure policy: the loader fails loudly. Shards were checked when built (``shards verify``), so
a missing file, a stale index or an undecodable sample at training time means the folder changed
on disk; the error names the shard and key, and nothing is skipped silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from train.batch import Loader
from train.transforms import TransformSpec, transform_spec

BACKENDS = ("auto", "dali", "torch")
DEFAULT_SHUFFLE_BUFFER = 4096  # encoded samples per pipeline; x ~35 kB at 256 px q90 = ~140 MB
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
    """One split folder written by ``shards build``, checked when opened."""

    split_dir: Path
    shards: list[ShardFile]
    key_to_id: dict[str, str] = field(default_factory=dict)  # only keys that differ from their sample_id
    mean_encoded_bytes: float = 0.0

    @property
    def total(self) -> int:
        return sum(s.samples for s in self.shards)

    @classmethod
    def open(cls, split_dir: str | Path) -> ShardSet:
        split_dir = Path(split_dir)
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir}: no such split folder; expected SHARDS/<split> written by `shards build`")
        table_path = split_dir / "shards.parquet"
        samples_path = split_dir / "samples.parquet"
        for path in (table_path, samples_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; expected a complete `shards build` output in {split_dir}")
        table = pl.read_parquet(table_path, columns=["shard", "samples", "bytes"]).sort("shard")
        samples = pl.read_parquet(samples_path, columns=["sample_id", "key", "shard"])
        per_shard = dict(samples.group_by("shard").len().iter_rows())
        shards = []
        for name, count, size in table.iter_rows():
            tar = split_dir / name
            shard = ShardFile(name=name, path=tar, index=tar.with_name(name[: -len(".tar")] + ".idx"), samples=count, bytes=size)
            if per_shard.get(name, 0) != count:
                raise ValueError(
                    f"{samples_path}: {per_shard.get(name, 0)} samples in {name}, but shards.parquet says {count}"
                )
            check_shard(shard)
            shards.append(shard)
        if not shards or sum(s.samples for s in shards) == 0:
            raise ValueError(f"{table_path}: expected at least one shard with samples, found none")
        differ = samples.filter(pl.col("key") != pl.col("sample_id"))
        key_to_id = dict(zip(differ["key"].to_list(), differ["sample_id"].to_list()))
        mean_bytes = float(table["bytes"].sum()) / max(int(table["samples"].sum()), 1)
        return cls(split_dir=split_dir, shards=shards, key_to_id=key_to_id, mean_encoded_bytes=mean_bytes)

    def sample_id(self, key: str) -> str:
        return self.key_to_id.get(key, key)

    def plan(self, epoch: int, *, seed: int, shuffle: bool, rank: int, world_size: int) -> EpochPlan:
        """Shard order of ``epoch`` (drawn from ``(seed, epoch)`` when shuffling) and ``rank``'s range."""
        order = list(self.shards)
        if shuffle:
            perm = np.random.default_rng([seed, epoch]).permutation(len(order))
            order = [order[i] for i in perm]
        start, stop = rank_range(self.total, rank, world_size)
        return EpochPlan(epoch=epoch, shards=order, start=start, stop=stop)

    def batches(self, *, train: bool, batch_size: int, rank: int, world_size: int) -> int:
        """Batches per epoch on ``rank``: full batches only, the same on every rank (train); every sample once (eval)."""
        if train:
            return (self.total // world_size) // batch_size
        start, stop = rank_range(self.total, rank, world_size)
        return -(-(stop - start) // batch_size)


def rank_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank's contiguous range of ``total`` samples: DALI's ``shard_id``/``num_shards`` partition."""
    return total * rank // world_size, total * (rank + 1) // world_size


def check_shard(shard: ShardFile) -> None:
    """Raise unless the tar and its index exist and still match ``shards.parquet`` and each other.

    Checks: both files exist; the tar's size is the one recorded at build time; the index's
    header counts the recorded samples; the members its first and last lines point at have the
    named tar headers (a tar rewritten after its index fails this). The index is written after
    the tar, so an index older than its tar is reported as stale in the message.
    """
    for path, what in ((shard.path, "tar"), (shard.index, "index")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} file missing (listed in shards.parquet); rebuild with `shards build`")
    size = shard.path.stat().st_size
    if size != shard.bytes:
        raise ValueError(f"{shard.path}: size {size} bytes, expected {shard.bytes} (shards.parquet): the tar changed after the build")
    lines = _first_and_last_lines(shard.index)
    try:
        version, count = lines[0].split()
        count_ok = int(count) == shard.samples
    except ValueError:
        version, count_ok = "", False
    problem = None
    if version != "v1.2" or not count_ok:
        problem = f"header {lines[0]!r}, expected 'v1.2 {shard.samples}'"
    else:
        with open(shard.path, "rb") as tar:
            for line in (lines[1], lines[-1]):
                problem = problem or _member_mismatch(tar, line, size)
    if problem:
        stale = shard.index.stat().st_mtime < shard.path.stat().st_mtime
        raise ValueError(
            f"{shard.index}: {'stale' if stale else 'wrong'} index for {shard.name}: {problem}"
            f"{' (the index is older than its tar)' if stale else ''}; rebuild the shard with `shards build`"
        )


def _first_and_last_lines(path: Path) -> list[str]:
    """The header, the first sample's line and the last sample's line of an index file."""
    with open(path, "rb") as handle:
        header = handle.readline().decode("ascii", "replace").strip()
        first = handle.readline().decode("ascii", "replace").strip()
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 4096))  # index lines are < 500 bytes
        tail = [line for line in handle.read().decode("ascii", "replace").splitlines() if line.strip()]
    return [header, first, tail[-1] if first and tail else ""]


def _member_mismatch(tar: Any, line: str, size: int) -> str | None:
    """None when each ``<ext> <offset> <size> <name>`` of an index line matches the tar's header before it."""
    fields = line.split()
    if not fields or len(fields) % 4:
        return f"index line {line[:80]!r} is not '<ext> <offset> <size> <name>' groups"
    for i in range(0, len(fields), 4):
        _, offset, length, name = fields[i : i + 4]
        offset, length = int(offset), int(length)
        if offset < _TAR_HEADER or offset + length > size:
            return f"member {name} at {offset}+{length} lies outside the {size}-byte tar"
        tar.seek(offset - _TAR_HEADER)
        header = tar.read(_TAR_HEADER)
        stored = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if stored != name:
            return f"expected member {name} at offset {offset}, the tar has {stored!r} there"
    return None


# --- the factory ------------------------------------------------------------------------------


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``dali`` where it imports, else ``torch``; ``dali`` without DALI is an error."""
    if backend not in BACKENDS:
        raise ValueError(f"loader backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "dali" if dali_available() else "torch"
    if backend == "dali" and not dali_available():
        raise RuntimeError("loader backend 'dali': nvidia-dali is not installed; install it or use --loader torch")
    return backend


def distributed_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``rank``/``world_size`` as given, else from ``torch.distributed`` when initialised, else (0, 1)."""
    if (rank is None or world_size is None) and torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank() if rank is None else rank
        world_size = torch.distributed.get_world_size() if world_size is None else world_size
    rank, world_size = (0 if rank is None else rank), (1 if world_size is None else world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


def build_loader(
    split_dir: Path,
    *,
    train: bool,
    batch_size: int,
    image_size: int,
    device: str,
    seed: int,
    backend: str = "auto",
    workers: int = 4,
    rank: int | None = None,
    world_size: int | None = None,
    scale: tuple[float, float] = (0.25, 1.0),
    jitter: float = 0.0,
    amp: bool = False,
    mean: Any = None,
    std: Any = None,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    decode: str = "auto",
) -> Loader:
    """A ``Loader`` over ``split_dir`` (``SHARDS/<split>``); see the module docstring for the plan.

    ``device`` is "cpu" or "cuda[:N]"; ``decode`` "auto" decodes on that device, "cpu" forces CPU
    decoding. ``workers``: DALI CPU threads, or DataLoader worker processes for the twin.
    ``mean``/``std`` default to ``dataset.json``'s pixel_stats (0-255 scale), else ImageNet's.
    ``amp``: float16 images when they are produced on a GPU.
    """
    split_dir = Path(split_dir)
    backend = resolve_backend(backend)
    rank, world_size = distributed_rank(rank, world_size)
    if batch_size < 1 or (train and batch_size < 2):
        raise ValueError(f"batch_size: expected at least {2 if train else 1} (BatchNorm in train mode needs 2), got {batch_size}")
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer: expected at least 1 sample, got {shuffle_buffer}")
    if decode not in ("auto", "cpu"):
        raise ValueError(f"decode: expected 'auto' or 'cpu', got {decode!r}")
    shards = ShardSet.open(split_dir)
    if shards.total < world_size:
        raise ValueError(f"{split_dir}: {shards.total} samples cannot be split over {world_size} ranks")
    if train and shards.batches(train=True, batch_size=batch_size, rank=rank, world_size=world_size) == 0:
        raise ValueError(
            f"{split_dir}: {shards.total} samples over {world_size} rank(s) cannot fill one training batch of {batch_size}"
        )
    if mean is None or std is None:
        mean, std = _dataset_stats(split_dir, mean, std)
    spec = transform_spec(train=train, image_size=image_size, scale=scale, jitter=jitter, mean=mean, std=std,
                          half=amp and device.startswith("cuda"))  # fmt: skip
    common: dict[str, Any] = {
        "batch_size": batch_size, "seed": seed, "rank": rank, "world_size": world_size, "workers": workers,
        "device": device, "shuffle_buffer": shuffle_buffer,
    }  # fmt: skip
    if backend == "dali":
        from train.loader_dali import DaliLoader

        return DaliLoader(shards, spec, decode=decode, **common)
    from train.loader_torch import TorchLoader

    return TorchLoader(shards, spec, **common)


def _dataset_stats(split_dir: Path, mean: Any, std: Any) -> tuple[Any, Any]:
    """Fill missing mean/std from ``dataset.json`` (0-255 scale); None stays None (ImageNet's)."""
    from train.data import read_dataset_info

    try:
        info = read_dataset_info(split_dir)
    except FileNotFoundError:
        return mean, std
    return (info.mean if mean is None else mean), (info.std if std is None else std)


# --- state shared by both loaders ---------------------------------------------------------------


def loader_state(backend: str, *, spec: TransformSpec, epoch: int, position: int, settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``state_dict`` both loaders return: where they are, and the settings a resume must share."""
    return {"format": STATE_FORMAT, "backend": backend, "train": spec.train, "epoch": epoch, "position": position,
            **settings, **extra}  # fmt: skip


def check_state(state: dict[str, Any], backend: str, *, spec: TransformSpec, settings: dict[str, Any]) -> tuple[int, int]:
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
