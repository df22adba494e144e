"""The plain-PyTorch twin of the DALI loader: ``webdataset`` reads the tars, PIL decodes,
``train.data.transforms.PilTransform`` applies the same spec, ``torch.utils.data.DataLoader`` worker
processes run it. For hosts without DALI, and the baseline of ``bench/loader_bench.py``.

Same plan as DALI (``train.data.loader.EpochPlan``: shard order per epoch, the rank's contiguous range,
batches per epoch). The rank's range is cut into one contiguous part per worker; each worker
streams its part, shuffles it in a buffer of ``shuffle_buffer // workers`` encoded samples (so all
workers together hold what one DALI pipeline holds), decodes and batches it. The DataLoader takes
the workers' batches round-robin (a fixed order: an exhausted worker drops out of the cycle
without reordering the others), and the main process cuts that stream into batches of exactly
``batch_size`` (training stops after ``len(self)`` of them; evaluation keeps the partial last one).

Randomness comes from ``(seed, epoch, worker)`` (shuffle) and ``(seed, epoch, worker, batch, rank)``
(crops, flips, jitter: different on every rank, rank 0 as a single process), so an epoch is a pure
function of the seed, the epoch, the rank,
``world_size`` and ``workers``. Resume is the documented fallback: replay the epoch with the same
seeds, reading but not decoding the worker batches that the saved ``position`` already covered
(the shuffle buffer still sees them, so the order is unchanged), and drop the rows of the one
worker batch that straddles the position. The result is exactly the batches an uninterrupted run
yields next; ``workers`` must be the same as when the state was saved.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pawpipe.common.contracts.tar_layout import CLS, JPG, JSON
from pawpipe.train.data.batch import Batch
from pawpipe.train.data.shardset import (
    EpochPlan,
    Piece,
    ShardSet,
    check_state,
    loader_state,
    read_index_keys,
    undecodable,
)
from pawpipe.train.data.transforms import PilTransform, TransformSpec

log = logging.getLogger(__name__)


def worker_ranges(plan: EpochPlan, workers: int) -> list[tuple[int, int]]:
    """Each worker's contiguous part ``[start, stop)`` of the rank's range."""
    n = plan.samples
    return [(plan.start + n * w // workers, plan.start + n * (w + 1) // workers) for w in range(workers)]


def round_robin(sizes: list[list[int]]) -> list[tuple[int, int]]:
    """(worker, size) of each worker batch in the order the DataLoader returns them."""
    order = []
    for r in range(max((len(s) for s in sizes), default=0)):
        order.extend((w, s[r]) for w, s in enumerate(sizes) if r < len(s))
    return order


def batch_sizes(samples: int, batch_size: int) -> list[int]:
    return [batch_size] * (samples // batch_size) + ([samples % batch_size] if samples % batch_size else [])


def resume_plan(counts: list[int], batch_size: int, position: int) -> tuple[list[int], int]:
    """Worker batches to skip undecoded, and rows to drop after them, to resume after ``position`` batches."""
    skip, consumed = [0] * len(counts), 0
    target = position * batch_size
    for worker, size in round_robin([batch_sizes(n, batch_size) for n in counts]):
        if consumed + size > target:
            break
        skip[worker] += 1
        consumed += size
    return skip, target - consumed


def buffer_shuffle(samples: Iterable[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Bounded-memory shuffle: hold ``size`` items, emit a random one, refill from the stream, drain at the end."""
    buffer: list[Any] = []
    for item in samples:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = int(rng.integers(len(buffer)))
        buffer[i], item = item, buffer[i]
        yield item
    while buffer:
        i = int(rng.integers(len(buffer)))
        buffer[i], buffer[-1] = buffer[-1], buffer[i]
        yield buffer.pop()


def read_pieces(pieces: list[Piece]) -> Iterator[tuple[str, str, bytes, bytes]]:
    """(tar path, key, jpg bytes, cls bytes) of each sample of ``pieces``, streamed with webdataset.

    The tar is read as a stream, so each key is checked against the index (checked at open
    against the tar headers and ``samples.parquet``): a member the index does not list stops
    the epoch instead of becoming a sample.
    """
    for piece in pieces:
        url = str(piece.shard.path)
        expected = read_index_keys(piece.shard)[piece.start : piece.stop]
        dataset = wds.WebDataset(
            [url],
            shardshuffle=False,
            nodesplitter=None,
            workersplitter=None,
            empty_check=False,
            select_files=lambda name: not name.endswith(f".{JSON}"),
        )
        for want, sample in zip(expected, itertools.islice(dataset, piece.start, piece.stop)):
            key = sample["__key__"]
            if key != want:
                raise ValueError(
                    f"{url}: member {key!r} where the index lists {want!r}; rebuild the shard with `shards build`"
                )
            missing = [ext for ext in (JPG, CLS) if ext not in sample]
            if missing:
                raise ValueError(f"{url}: key {key}: missing member(s) {', '.join('.' + m for m in missing)}")
            yield url, key, sample[JPG], sample[CLS]


class _ShardStream(IterableDataset):
    """One worker's part of the epoch: read, shuffle (train), decode + transform, batch."""

    def __init__(
        self,
        parts: list[list[Piece]],
        spec: TransformSpec,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        buffer: int,
        skip: list[int],
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.parts, self.spec, self.batch_size = parts, spec, batch_size
        self.seed, self.epoch, self.buffer, self.skip, self.rank = seed, epoch, buffer, skip, rank
        self.transform = PilTransform(spec)

    def __iter__(self) -> Iterator[tuple[torch.Tensor | None, torch.Tensor, list[str]]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        samples: Iterable[tuple[str, str, bytes, bytes]] = read_pieces(self.parts[worker])
        if self.spec.train:
            samples = buffer_shuffle(samples, self.buffer, np.random.default_rng([self.seed, self.epoch, worker, 0]))
        for index in itertools.count():
            chunk = list(itertools.islice(samples, self.batch_size))
            if not chunk:
                return
            labels = torch.tensor([_label(url, key, cls) for url, key, _, cls in chunk], dtype=torch.int64)
            keys = [key for _, key, _, _ in chunk]
            if index < self.skip[worker]:
                yield None, labels, keys  # covered by the resumed position: read, never decoded
                continue
            entropy = [self.seed, self.epoch, worker, 1, index] + ([self.rank] if self.rank else [])
            rng = np.random.default_rng(entropy) if self.spec.train else None
            images = torch.stack([self._decode(url, key, jpg, rng) for url, key, jpg, _ in chunk])
            yield images, labels, keys

    def _decode(self, url: str, key: str, jpg: bytes, rng: np.random.Generator | None) -> torch.Tensor:
        try:
            return self.transform(jpg, rng)
        except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for broken or truncated files
            raise undecodable(url, key, exc) from None


def _label(url: str, key: str, cls: bytes) -> int:
    try:
        return int(cls)
    except ValueError:
        raise ValueError(f"{url}: key {key}: .cls is {cls[:20]!r}, expected a label id in ASCII digits") from None


class TorchLoader:
    """``train.data.batch.Loader`` over a ``ShardSet`` with webdataset + PIL + a DataLoader."""

    def __init__(
        self,
        shards: ShardSet,
        spec: TransformSpec,
        *,
        batch_size: int,
        seed: int,
        rank: int,
        world_size: int,
        workers: int,
        device: str,
        shuffle_buffer: int,
    ) -> None:
        self.shards, self.spec = shards, spec
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.workers = workers
        self.device = torch.device(device)
        self.shuffle_buffer = shuffle_buffer
        self.epoch, self.position = 0, 0
        log.info(
            "PyTorch loader %s: rank %d/%d, %d batches of %d, %d workers",
            shards.split_dir,
            rank,
            world_size,
            len(self),
            batch_size,
            workers,
        )

    def __len__(self) -> int:
        return self.shards.batches(
            train=self.spec.train, batch_size=self.batch_size, rank=self.rank, world_size=self.world_size
        )

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def _settings(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "samples": self.shards.total,
            "shuffle_buffer": self.shuffle_buffer,
            "workers": self.workers,
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "position" (batches consumed), settings...}``: resume replays the epoch (module docstring)."""
        return loader_state(
            "torch", spec=self.spec, epoch=self.epoch, position=self.position, settings=self._settings()
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = check_state(state, "torch", spec=self.spec, settings=self._settings())

    def __iter__(self) -> Iterator[Batch]:
        total = len(self)
        if self.position >= total or not self.spec.train:
            self.position = 0  # an evaluation always starts from its first batch
        plan = self.shards.plan(
            self.epoch, seed=self.seed, shuffle=self.spec.train, rank=self.rank, world_size=self.world_size
        )
        streams = max(1, self.workers)
        ranges = worker_ranges(plan, streams)
        skip, drop = resume_plan([b - a for a, b in ranges], self.batch_size, self.position)
        dataset = _ShardStream(
            [plan.pieces(a, b) for a, b in ranges],
            self.spec,
            batch_size=self.batch_size,
            seed=self.seed,
            epoch=self.epoch,
            buffer=max(1, self.shuffle_buffer // streams),
            skip=skip,
            rank=self.rank,
        )
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if self.workers else None,
        )
        emitted = self.position
        pending: list[tuple[torch.Tensor, torch.Tensor, list[str]]] = []
        held = 0
        stream = iter(loader)
        try:
            for images, labels, keys in stream:
                if images is None:
                    continue
                if drop:
                    cut = min(drop, len(keys))
                    images, labels, keys, drop = images[cut:], labels[cut:], keys[cut:], drop - cut
                if not keys:
                    continue
                pending.append((images, labels, keys))
                held += len(keys)
                while held >= self.batch_size and emitted < total:
                    batch, pending, held = _take(pending, self.batch_size)
                    emitted += 1
                    self.position = emitted
                    yield self._batch(*batch)
                if emitted >= total:
                    break
            if held and emitted < total:
                batch, pending, held = _take(pending, held)
                self.position = emitted + 1
                yield self._batch(*batch)
        finally:
            del stream  # shuts the worker processes down
        self.position = 0

    def _batch(self, images: torch.Tensor, labels: torch.Tensor, keys: list[str]) -> Batch:
        if self.device.type != "cpu":
            images = images.to(self.device, non_blocking=True)
        return Batch(images=images, labels=labels, sample_ids=[self.shards.sample_id(k) for k in keys])


def _take(pending: list[tuple[torch.Tensor, torch.Tensor, list[str]]], n: int):  # type: ignore[no-untyped-def]
    """The first ``n`` rows of the pending worker batches, and what is left of them."""
    if len(pending[0][2]) == n:
        return pending[0], pending[1:], sum(len(p[2]) for p in pending[1:])
    out_images, out_labels, out_keys, rest, need = [], [], [], [], n
    for images, labels, keys in pending:
        if need == 0:
            rest.append((images, labels, keys))
            continue
        k = min(need, len(keys))
        out_images.append(images[:k])
        out_labels.append(labels[:k])
        out_keys.extend(keys[:k])
        if k < len(keys):
            rest.append((images[k:], labels[k:], keys[k:]))
        need -= k
    batch = (torch.cat(out_images), torch.cat(out_labels), out_keys)
    return batch, rest, sum(len(p[2]) for p in rest)
