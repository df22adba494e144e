"""The one checkpoint layout, written atomically: everything needed to evaluate, predict or resume.

    {"format": "pawpipe.train.checkpoint/1",
     "config": TrainConfig as JSON, "vocabulary": [...],
     "model": state dict (PawNet), "ema": state dict or None,
     "optimizer": ..., "scaler": ... or None,
     "progress": TrainProgress as a dict (epoch, step, batch_in_epoch, best, early stopping, counters),
     "loader": the training loader's state_dict() (its position inside the epoch),
     "rng": {"python", "numpy", "torch", "cuda"}}

The learning-rate schedule is a pure function of ``progress.step`` (see schedule.py), so it has no
state of its own to save.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ingest.atomic import atomic_path

FORMAT = "pawpipe.train.checkpoint/1"


@dataclass
class TrainProgress:
    """Counters the loop advances; restoring them (plus the loader state) resumes a run exactly."""

    epoch: int = 0  # current epoch (0-based)
    step: int = 0  # global optimizer steps taken (including skipped non-finite ones)
    batch_in_epoch: int = 0  # micro-batches consumed in the current epoch
    samples_seen: int = 0
    best_metric: str = "accuracy"
    best_value: float = float("-inf")
    best_epoch: int = -1
    best_step: int = -1
    monitor_best: float = float("inf")  # early stopping: lowest monitored validation loss
    bad_epochs: int = 0  # epochs since monitor_best improved
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one short record per evaluation

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TrainProgress:
        return cls(**state)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (the layout above; ``format`` is added) atomically: readers never see half a file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    try:
        # Our own files only: they hold RNG states and plain containers next to tensors.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: expected a checkpoint of format {FORMAT!r}, got {got!r}")
    return state
