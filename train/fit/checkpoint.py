"""The one checkpoint layout, written atomically: everything needed to evaluate, predict or resume.

    {"format": "pawpipe.train.checkpoint/1",
     "config": TrainConfig as JSON, "vocabulary": [...],
     "model": state dict (PawNet), "ema": state dict or None,
     "optimizer": ..., "scaler": ... or None,
     "progress": TrainProgress as a dict (epoch, step, batch_in_epoch, best, early stopping, counters),
     "loader": the training loader's state_dict() (its position inside the epoch),
     "schedule": {"lr", "min_lr", "warmup_steps", "total_steps"},
     "rng": {"python", "numpy", "torch", "cuda"}, "metrics": the last evaluation's summary,
     "normalize": {"mean", "std"} the inputs were normalised with (0-255 scale), used again by
                  eval and predict on any shards (None for loaders without a transform spec),
     "ranks": None, or on N ranks one {"loader", "rng"} per rank (each rank reads its own part of
              the data and draws its own dropout and crops, so each resumes from its own state;
              "loader" and "rng" above are rank 0's)}

The learning-rate schedule is a pure function of ``progress.step`` (see schedule.py): it has no
state of its own; its parameters are saved so that a resume can check it rebuilt the same one.

``last.pt`` is written at the end of every epoch and mid-epoch (timer, SIGUSR1, a stop); the
file it replaces is kept as ``prev.pt``. Each write is temporary file, fsync, rename, so at every
instant ``last.pt`` is a complete checkpoint (the old one or the new one), whatever kills the
process; ``latest_checkpoint`` falls back to ``prev.pt`` should ``last.pt`` still be unreadable
(a disk that lied about fsync).
"""

from __future__ import annotations

import logging
import os
import pickle
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pawpipe.common.atomic import atomic_path

log = logging.getLogger(__name__)

FORMAT = "pawpipe.train.checkpoint/1"
LAST, PREVIOUS, BEST = "last.pt", "prev.pt", "best.pt"


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
    stopped_by: str = ""  # "early_stopping" once the run has stopped early (a restart does not train on)
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


def rank_state(state: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """This rank's ``{"loader", "rng"}`` of a checkpoint (a one-process checkpoint serves rank 0 only)."""
    ranks = state.get("ranks")
    if world_size == 1 and not ranks:
        return {"loader": state["loader"], "rng": state["rng"]}
    if not ranks or len(ranks) != world_size:
        saved = len(ranks) if ranks else 1
        raise ValueError(
            f"checkpoint: saved by {saved} rank(s), resumed on {world_size}: a mid-run resume needs the "
            "same number of ranks (or start over with --new)"
        )
    return ranks[rank]


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any], *, keep_previous: str | None = None) -> Path:
    """Write ``state`` (the layout above; ``format`` is added) atomically: readers never see half a file.

    ``keep_previous``: a file name in the same folder that gets the checkpoint being replaced
    (a hard link, made only once the new file is complete, so ``path`` never goes missing).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        # Through our own handle: a write that fails (a full disk) closes it here, so the space the
        # unlinked temporary file holds is free again for the run's status and record; torch.save on a
        # path leaves its writer, and the file, open in the traceback.
        with open(tmp, "wb") as handle:
            torch.save({"format": FORMAT, **state}, handle)
        if keep_previous and path.exists():
            with atomic_path(path.with_name(keep_previous)) as previous:
                previous.unlink()
                os.link(path, previous)
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    try:
        # Our own files only: they hold RNG states and plain containers next to tensors.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: cannot read checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: expected a checkpoint of format {FORMAT!r}, got {got!r}")
    return state


def latest_checkpoint(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable of ``last.pt`` and ``prev.pt`` in ``folder`` with its state, or None if neither exists.

    An unreadable ``last.pt`` is logged and skipped; when nothing readable is left the error says why.
    """
    folder = Path(folder)
    problems = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.exists():
            continue
        try:
            return path, load_checkpoint(path)
        except ValueError as exc:
            log.warning("%s; trying the previous checkpoint", exc)
            problems.append(str(exc))
    if problems:
        raise ValueError(f"{folder}: no readable checkpoint: {'; '.join(problems)}")
    return None
