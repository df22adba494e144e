"""Per-sample training dynamics: each training sample's loss and logit margin, every epoch, to Parquet.

Computed from the logits the training step already has (no extra forward pass), buffered up to
``rows_per_group`` rows and flushed as one Parquet row group, so memory stays bounded however
large the epoch. One file per epoch (and rank), written atomically: ``dynamics/epoch_0003.parquet``.

Columns: ``sample_id`` (string), ``epoch``, ``step`` (global optimizer step of the update the
sample took part in), ``label_id``, ``pred_id``, ``loss`` (plain ``-log p(label)``: no class
weights, no smoothing), ``margin`` (``z_label - max_{c != label} z_c``; negative = misclassified).
Samples in a skipped (non-finite) step are recorded too, with their non-finite values.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ingest.atomic import atomic_path

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


def dynamics_path(folder: str | Path, epoch: int, *, rank: int = 0, world_size: int = 1) -> Path:
    suffix = f".rank{rank}" if world_size > 1 else ""
    return Path(folder) / f"epoch_{epoch:04d}{suffix}.parquet"


class DynamicsWriter:
    """Collects one epoch; ``close()`` publishes the file, ``abort()`` drops it (e.g. on a crash)."""

    def __init__(self, path: str | Path, *, epoch: int, rows_per_group: int = 65_536) -> None:
        self.path = Path(path)
        self.epoch = epoch
        self.rows_per_group = rows_per_group
        self.rows = 0
        self._buffer: list[tuple[list[str], int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._buffered = 0
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
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

    def close(self) -> Path:
        self.flush()
        self._writer.close()
        self._stack.close()
        return self.path

    def abort(self) -> None:
        self._buffer.clear()
        self._writer.close()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)
