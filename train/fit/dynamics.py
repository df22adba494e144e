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

The columns are the contract ``common.contracts.dynamics_table`` (``schema`` here):
``sample_id``, ``epoch``, ``step``, ``label_id``, ``pred_id``, ``loss``, ``margin``, ``probs``
(float16: 2M samples x 6 classes is 24 MB an epoch) and ``finite``.

The skip decision is taken once per update, after its last micro-batch was added; the writer
reads it from the trainer's live ``TrainProgress`` (``nonfinite_total`` before and after the
step), so a step's rows are written only once its update is decided.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pawpipe.common.atomic import publish, temp_path
from pawpipe.common.contracts.dynamics_table import dynamics_schema as schema

if TYPE_CHECKING:
    from pawpipe.train.fit.checkpoint import TrainProgress

_PART = re.compile(r"^epoch_(\d+)\.b(\d+)-(\d+)(?:\.rank(\d+))?\.parquet$")


def part_path(folder: str | Path, epoch: int, start: int, stop: int, *, rank: int = 0, world_size: int = 1) -> Path:
    """The part file of micro-batches ``[start, stop)`` of ``epoch``."""
    suffix = f".rank{rank}" if world_size > 1 else ""
    return Path(folder) / f"epoch_{epoch:04d}.b{start:07d}-{stop:07d}{suffix}.parquet"


@dataclass
class _Rows:
    """One queued micro-batch; ``skipped_before`` is ``progress.nonfinite_total`` when it was added."""

    sample_ids: list[str]
    step: int
    tensors: tuple[torch.Tensor, ...]  # labels, preds, loss, margin, probs (still on the device)
    skipped_before: int | None


class DynamicsWriter:
    """Collects rows into one Parquet file; ``close()`` publishes it atomically, ``abort()`` drops it."""

    def __init__(
        self, path: str | Path, *, epoch: int, rows_per_group: int = 65_536, num_classes: int | None = None
    ) -> None:
        self.path = Path(path)
        self.epoch = epoch
        self.rows_per_group = rows_per_group
        self.num_classes = num_classes  # None: taken from the first batch's probabilities
        self.rows = 0
        self._buffer: list[_Rows] = []
        self._buffered = 0
        self._progress: TrainProgress | None = None
        self._tmp = temp_path(self.path)
        self._writer: pq.ParquetWriter | None = None  # opened at the first write, once the class count is known

    def add(
        self,
        sample_ids: list[str],
        *,
        step: int,
        labels: torch.Tensor,
        preds: torch.Tensor,
        loss: torch.Tensor,
        margin: torch.Tensor,
        probs: torch.Tensor,
        progress: TrainProgress | None = None,
    ) -> None:
        """Queue one micro-batch (tensors may be on the GPU; they are copied to the host at flush time in one go).

        ``progress``: the trainer's live progress, from which the update's skip decision is read
        once the step is done; without it a row counts as finite when its loss and margin are.
        """
        if self.num_classes is None:
            self.num_classes = int(probs.shape[1])
        tensors = (labels.detach(), preds.detach(), loss.detach(), margin.detach(), probs.detach().to(torch.float16))
        self._progress = progress
        self._buffer.append(
            _Rows(list(sample_ids), step, tensors, None if progress is None else progress.nonfinite_total)
        )
        self._buffered += len(sample_ids)
        if self._buffered >= self.rows_per_group:
            self.flush()

    def _decided(self) -> list[bool | None]:
        """Per queued micro-batch: its update was finite (True), skipped (False), or not decided yet (None)."""
        out: list[bool | None] = []
        for i, rows in enumerate(self._buffer):
            if rows.skipped_before is None:
                out.append(True)
                continue
            later = next((r.skipped_before for r in self._buffer[i + 1 :] if r.step > rows.step), None)
            if later is None and self._progress is not None and self._progress.step > rows.step:
                later = self._progress.nonfinite_total
            out.append(None if later is None else later == rows.skipped_before)
        return out

    def flush(self) -> None:
        """Write the queued rows whose update is decided as one row group; the rest stay queued."""
        decided = self._decided()
        ready = [(rows, ok) for rows, ok in zip(self._buffer, decided, strict=True) if ok is not None]
        if not ready:
            return
        self._buffer = [rows for rows, ok in zip(self._buffer, decided, strict=True) if ok is None]
        self._buffered = sum(len(rows.sample_ids) for rows in self._buffer)
        ids = [s for rows, _ in ready for s in rows.sample_ids]
        steps = np.concatenate([np.full(len(rows.sample_ids), rows.step, dtype=np.int64) for rows, _ in ready])
        labels, preds, loss, margin, probs = (torch.cat([rows.tensors[i] for rows, _ in ready]).cpu() for i in range(5))
        loss, margin = loss.float().reshape(-1).numpy(), margin.float().reshape(-1).numpy()
        finite = np.concatenate([np.full(len(rows.sample_ids), ok, dtype=bool) for rows, ok in ready])
        finite &= np.array([rows.skipped_before is not None for rows, _ in ready for _ in rows.sample_ids]) | (
            np.isfinite(loss) & np.isfinite(margin)
        )
        k = self.num_classes
        table = pa.table(
            {
                "sample_id": pa.array(ids, pa.string()),
                "epoch": pa.array(np.full(len(ids), self.epoch, dtype=np.int32)),
                "step": pa.array(steps),
                "label_id": pa.array(labels.to(torch.int32).reshape(-1).numpy()),
                "pred_id": pa.array(preds.to(torch.int32).reshape(-1).numpy()),
                "loss": pa.array(loss),
                "margin": pa.array(margin),
                "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1).numpy()), k),
                "finite": pa.array(finite),
            },
            schema=schema(k),
        )
        self._open().write_table(table, row_group_size=len(ids))
        self.rows += len(ids)

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, schema(self.num_classes or 0), compression="zstd")
        return self._writer

    def close(self, path: str | Path | None = None) -> Path:
        """Publish the rows at ``path`` (default: the path given at construction); every queued step must be decided."""
        self.flush()
        if self._buffer:
            raise RuntimeError(f"{self.path}: step {self._buffer[0].step} is not decided yet; close after its update")
        self._open().close()
        self.path = Path(path) if path is not None else self.path
        try:
            publish(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        self._buffer.clear()
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)


class EpochDynamics:
    """One epoch (of one rank) as part files, cut at each checkpoint; the ``dynamics`` of ``Trainer.train_epoch``."""

    def __init__(
        self,
        folder: str | Path,
        epoch: int,
        *,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        rows_per_group: int = 65_536,
    ) -> None:
        self.folder, self.epoch = Path(folder), epoch
        self.rank, self.world_size, self.rows_per_group = rank, world_size, rows_per_group
        self.parts: list[Path] = []
        self._start = start_batch
        self._writer: DynamicsWriter | None = self._open()

    def _open(self) -> DynamicsWriter:
        return DynamicsWriter(
            part_path(self.folder, self.epoch, self._start, self._start, rank=self.rank, world_size=self.world_size),
            epoch=self.epoch,
            rows_per_group=self.rows_per_group,
        )

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
        path = writer.close(
            part_path(self.folder, self.epoch, self._start, batch, rank=self.rank, world_size=self.world_size)
        )
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
        return pl.DataFrame(schema=pl.from_arrow(schema(0).empty_table()).schema)
    return pl.concat([pl.read_parquet(p[4]) for p in parts])
