"""``CheckpointSaver``: a run's checkpoint files, owned in one place (as timm's ``CheckpointSaver``).

``last.pt`` at the end of every epoch and whenever the session asks (a stop, SIGUSR1, or ``due``:
``checkpoint.every_minutes`` / ``every_steps``), the file it replaces kept as ``prev.pt``; ``best.pt``
whenever an evaluation beats the best ``eval.best_metric`` so far, which the saver records in the
run's progress (value, epoch, step). The layout of a file is ``train.fit.checkpoint``'s.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pawpipe.train.data.batch import Loader
from pawpipe.train.fit.checkpoint import BEST, LAST, PREVIOUS, rng_state, save_checkpoint
from pawpipe.train.fit.context import RunContext
from pawpipe.train.fit.device import gather_objects
from pawpipe.train.fit.metrics import summary
from pawpipe.train.fit.trainer import Trainer

log = logging.getLogger(__name__)


class CheckpointSaver:
    """Every rank calls ``save_last`` and ``consider_best`` at the same step (the ranks' loader positions
    and random streams are gathered into the one file); rank 0 writes."""

    def __init__(self, ctx: RunContext, trainer: Trainer, folder: Path) -> None:
        self.cfg, self.trainer, self.folder = ctx.cfg, trainer, folder
        self.train_loader, self.vocabulary = ctx.train_loader, ctx.vocabulary
        self.rank, self.world = ctx.rank, ctx.world
        self._saved_at = time.monotonic()

    @property
    def last(self) -> Path:
        return self.folder / LAST

    @property
    def best(self) -> Path:
        return self.folder / BEST

    def due(self, step: int) -> bool:
        """Whether the cadence asks for a mid-epoch ``last.pt`` after optimizer step ``step``."""
        every = self.cfg.checkpoint
        if every.every_steps and step % every.every_steps == 0:
            return True
        return every.every_minutes > 0 and time.monotonic() - self._saved_at >= every.every_minutes * 60

    def save_last(self, metrics: dict[str, Any]) -> Path:
        """``last.pt`` at this step (``metrics``: the latest evaluation, kept as its summary)."""
        self._save(LAST, metrics, keep_previous=PREVIOUS)
        self._saved_at = time.monotonic()
        return self.last

    def consider_best(self, metrics: dict[str, Any], *, epoch: int | float) -> bool:
        """After an evaluation: when ``metrics`` beat the best so far, record it in the progress and write
        ``best.pt``."""
        p, name = self.trainer.progress, self.cfg.eval.best_metric
        value = metrics[name]
        if not (math.isfinite(value) and value > p.best_value):
            return False
        p.best_value, p.best_epoch, p.best_step = value, epoch, p.step
        self._save(BEST, metrics)
        log.info("new best validation %s %.4f at step %d", name, value, p.step)
        return True

    def _save(self, name: str, metrics: dict[str, Any], *, keep_previous: str | None = None) -> None:
        ranks = gather_objects({"loader": self.train_loader.state_dict(), "rng": rng_state()})
        state = {
            **self.trainer.state_dict(),
            "config": self.cfg.model_dump(mode="json"),
            "vocabulary": self.vocabulary,
            "loader": ranks[0]["loader"],
            "schedule": asdict(self.trainer.schedule),  # a pure function of the step: kept to check a resume
            "rng": ranks[0]["rng"],
            "ranks": ranks if self.world > 1 else None,
            "normalize": _normalize(self.train_loader),
            "metrics": summary(metrics),
        }
        if self.rank == 0:
            save_checkpoint(self.folder / name, state, keep_previous=keep_previous)


def _normalize(loader: Loader) -> dict[str, list[float]] | None:
    """The input normalisation the model trains with (0-255 scale): evaluation and prediction of its
    checkpoints use these, whatever shards they read."""
    spec = getattr(loader, "spec", None)
    return {"mean": list(spec.mean), "std": list(spec.std)} if spec is not None else None
