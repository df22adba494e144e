"""Per-sample training dynamics: each training sample's loss and logit margin, every epoch, to Parquet.

Computed from the logits the training step already has (no extra forward pass), buffered up to
``rows_per_group`` rows and flushed as one Parquet row group, so memory stays bounded however
large the epoch. An epoch is written as **part files** (``EpochDynamics``), one per stretch of
micro-batches between two checkpoints, each published atomically:
``dynamics/epoch_0003.b0000000-0000120.parquet`` holds micro-batches ``[0, 120)`` of epoch 3
(``.rank1`` before ``.parquet`` on other ranks). A part is published just before the checkpoint
that ends it, so after a crash ``prune_parts`` removes exactly the parts past the checkpoint the
run resumes from and the epoch's rows are neither lost nor written twice. ``read_dynamics``
concatenates the parts (``pl.read_parquet("dynamics/*.parquet")`` works too).

Columns: ``sample_id`` (string), ``epoch``, ``step`` (global optimizer step of the update the
sample took part in), ``label_id``, ``pred_id``, ``loss`` (plain ``-log p(label)``: no class
weights, no smoothing), ``margin`` (``z_label - max_{c != label} z_c``; negative = misclassified).
Samples in a skipped (non-finite) step are recorded too, with their non-finite values.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ingest.atomic import publish, temp_path

SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("epoch", pa.int32()),
        ("step", pa.int64()),
        ("label_id", pa.int32()),
        ("pred_id", pa.int32()),
        ("loss", pa.float32()),
        ("margin", pa.float32()),
    ]
)


_PART = re.compile(r"^epoch_(\d+)\.b(\d+)-(\d+)(?:\.rank(\d+))?\.parquet$")


def part_path(folder: str | Path, epoch: int, start: int, stop: int, *, rank: int = 0, world_size: int = 1) -> Path:
    """The part file of micro-batches ``[start, stop)`` of ``epoch``."""
    suffix = f".rank{rank}" if world_size > 1 else ""
    return Path(folder) / f"epoch_{epoch:04d}.b{start:07d}-{stop:07d}{suffix}.parquet"


class DynamicsWriter:
    """Collects rows into one Parquet file; ``close()`` publishes it atomically, ``abort()`` drops it."""

    def __init__(self, path: str | Path, *, epoch: int, rows_per_group: int = 65_536) -> None:
        self.path = Path(path)
        self.epoch = epoch
        self.rows_per_group = rows_per_group
        self.rows = 0
        self._buffer: list[tuple[list[str], int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._buffered = 0
        self._tmp = temp_path(self.path)
        self._writer = pq.ParquetWriter(self._tmp, SCHEMA, compression="zstd")

    def add(
        self, sample_ids: list[str], *, step: int, labels: torch.Tensor, preds: torch.Tensor, loss: torch.Tensor, margin: torch.Tensor
    ) -> None:
        """Queue one batch (tensors may be on the GPU; they are copied to the host at flush time in one go)."""
        self._buffer.append((sample_ids, step, labels.detach(), preds.detach(), loss.detach(), margin.detach()))
        self._buffered += len(sample_ids)
        if self._buffered >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        ids = [s for part in self._buffer for s in part[0]]
        steps = np.concatenate([np.full(len(part[0]), part[1], dtype=np.int64) for part in self._buffer])
        cols = [torch.cat([part[i].reshape(-1) for part in self._buffer]).cpu() for i in range(2, 6)]
        table = pa.table(
            {
                "sample_id": pa.array(ids, pa.string()),
                "epoch": pa.array(np.full(len(ids), self.epoch, dtype=np.int32)),
                "step": pa.array(steps),
                "label_id": pa.array(cols[0].to(torch.int32).numpy()),
                "pred_id": pa.array(cols[1].to(torch.int32).numpy()),
                "loss": pa.array(cols[2].float().numpy()),
                "margin": pa.array(cols[3].float().numpy()),
            },
            schema=SCHEMA,
        )
        self._writer.write_table(table, row_group_size=len(ids))
        self.rows += len(ids)
        self._buffer.clear()
        self._buffered = 0

    def close(self, path: str | Path | None = None) -> Path:
        """Publish the rows at ``path`` (default: the path given at construction)."""
        self.flush()
        self._writer.close()
        self.path = Path(path) if path is not None else self.path
        try:
            publish(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        self._buffer.clear()
        self._writer.close()
        self._tmp.unlink(missing_ok=True)


class EpochDynamics:
    """One epoch (of one rank) as part files, cut at each checkpoint; the ``dynamics`` of ``Trainer.train_epoch``."""

    def __init__(
        self, folder: str | Path, epoch: int, *, start_batch: int = 0, rank: int = 0, world_size: int = 1,
        rows_per_group: int = 65_536,
    ) -> None:  # fmt: skip
        self.folder, self.epoch = Path(folder), epoch
        self.rank, self.world_size, self.rows_per_group = rank, world_size, rows_per_group
        self.parts: list[Path] = []
        self._start = start_batch
        self._writer: DynamicsWriter | None = self._open()

    def _open(self) -> DynamicsWriter:
        return DynamicsWriter(part_path(self.folder, self.epoch, self._start, self._start, rank=self.rank,
                                        world_size=self.world_size), epoch=self.epoch, rows_per_group=self.rows_per_group)  # fmt: skip

    def add(self, sample_ids: list[str], **values: torch.Tensor | int) -> None:
        self._writer.add(sample_ids, **values)

    def cut(self, batch: int) -> Path | None:
        """Publish micro-batches ``[start, batch)`` (nothing when empty) and go on with ``[batch, ...)``."""
        published = self._publish(batch)
        self._start, self._writer = batch, self._open()
        return published

    def close(self, batch: int) -> Path | None:
        """Publish the last part, ending at ``batch`` (the end of the epoch, or where the run stopped)."""
        published = self._publish(batch)
        self._writer = None
        return published

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def _publish(self, batch: int) -> Path | None:
        writer = self._writer
        writer.flush()
        if writer.rows == 0:
            writer.abort()
            return None
        path = writer.close(part_path(self.folder, self.epoch, self._start, batch, rank=self.rank, world_size=self.world_size))
        self.parts.append(path)
        return path


def list_parts(folder: str | Path) -> list[tuple[int, int, int, int, Path]]:
    """``(epoch, start, stop, rank, path)`` of every part file in ``folder``, in epoch and batch order."""
    found = []
    for path in Path(folder).glob("epoch_*.parquet"):
        match = _PART.match(path.name)
        if match:
            epoch, start, stop, rank = match.groups()
            found.append((int(epoch), int(start), int(stop), int(rank or 0), path))
    return sorted(found, key=lambda p: p[:4])


def prune_parts(folder: str | Path, *, epoch: int, batch: int) -> list[Path]:
    """Before resuming at micro-batch ``batch`` of ``epoch``: delete the parts past that point
    (written after the checkpoint the run resumes from) and unfinished temporary files; return them."""
    folder = Path(folder)
    removed = [path for e, _, stop, _, path in list_parts(folder) if (e, stop) > (epoch, batch)]
    removed += sorted(folder.glob(".epoch_*.tmp"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def read_dynamics(folder: str | Path, epoch: int | None = None) -> pl.DataFrame:
    """The rows of one epoch (or all), parts concatenated in batch order (ranks one after another)."""
    parts = [p for p in list_parts(folder) if epoch is None or p[0] == epoch]
    if not parts:
        return pl.DataFrame(schema=pl.from_arrow(SCHEMA.empty_table()).schema)
    return pl.concat([pl.read_parquet(p[4]) for p in parts])
