"""The contract between a loader and the trainer: what one batch is and what a loader offers.

Both loaders (DALI and the plain-PyTorch twin) yield ``Batch`` objects and implement
``Loader``; the trainer depends on nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class Batch:
    images: torch.Tensor  # (N, 3, H, W) float, normalised once (mean/std), on the loader's device
    labels: torch.Tensor  # (N,) int64 label ids
    sample_ids: list[str]  # manifest sample_id of each row, same order as images


class Loader(Protocol):
    batch_size: int

    def __iter__(self) -> Iterator[Batch]:
        """One epoch of batches (training: full batches only; evaluation: every sample once)."""

    def __len__(self) -> int:
        """Batches per epoch on this rank."""

    def set_epoch(self, epoch: int) -> None:
        """Reseed the per-epoch shard order / shuffling."""

    def state_dict(self) -> dict[str, Any]:
        """The position inside the current epoch, for mid-epoch resume."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict``."""
