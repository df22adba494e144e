"""``RunContext``: what one ``run_training`` call trains with, decided once and handed down whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pawpipe.train.config import TrainConfig
from pawpipe.train.data.batch import Loader
from pawpipe.train.fit.device import Precision
from pawpipe.train.fit.resume import ResumePoint
from pawpipe.train.rundir.signals import RunSignals


@dataclass(frozen=True)
class RunContext:
    """The config, the claimed run directory and where it resumes, the data, the placement: built by
    ``run_training`` once the run directory is claimed; the setup, the session, the checkpoint saver
    and the status report all read it."""

    cfg: TrainConfig
    run_dir: Path
    point: ResumePoint  # where training (re)starts; decided by rank 0, the same on every rank
    removed: dict[str, int]  # what the claim removed after that point (rank 0; empty elsewhere)
    train_loader: Loader
    val_loader: Loader
    vocabulary: list[str]
    class_weights: list[float] | None
    device: torch.device
    precision: Precision
    signals: RunSignals | None  # the process's installed signals; None: nothing stops the run from outside
    dataset: dict[str, Any] | None  # what run.json records about the shards
    rank: int = 0
    world: int = 1
