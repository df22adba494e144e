"""What a run tells the people watching it: every ``status.json`` update in one place (``RunReport``),
and off a terminal (journald, a log file) a plain progress line every ``record.progress_every_s``
(``ProgressLine``); on a terminal the progress bar shows the same loss, lr and ETA."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from pawpipe.train.config import TrainConfig
from pawpipe.train.fit.checkpoint import TrainProgress
from pawpipe.train.fit.context import RunContext
from pawpipe.train.fit.metrics import summary
from pawpipe.train.fit.pace import Eta, format_seconds
from pawpipe.train.fit.resume import ResumePoint
from pawpipe.train.rundir.status import StatusWriter

log = logging.getLogger(__name__)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunReport:
    """The run's ``status.json`` (``train.rundir.status.StatusWriter``): rank 0 writes it; on other ranks
    every method does nothing."""

    def __init__(self, ctx: RunContext) -> None:
        self.best_metric = ctx.cfg.eval.best_metric
        self.batches = len(ctx.train_loader)
        self.status = StatusWriter(ctx.run_dir, every_s=ctx.cfg.record.status_every_s) if ctx.rank == 0 else None

    def _update(self, **fields: Any) -> None:
        if self.status is not None:
            self.status.update(**fields)

    def _best(self, p: TrainProgress) -> dict[str, Any]:
        return {"metric": self.best_metric, "value": p.best_value, "epoch": p.best_epoch, "step": p.best_step}

    def starting(self, ctx: RunContext) -> None:
        self._update(
            state="starting",
            run_dir=str(ctx.run_dir),
            started=_now(),
            epochs=ctx.cfg.schedule.epochs,
            world_size=ctx.world,
            error=None,
        )

    def resumed(self, point: ResumePoint, metrics: dict[str, Any] | None, p: TrainProgress) -> None:
        """The run directory's own checkpoint was loaded: its metrics, position and best so far."""
        self._update(
            last_metrics=metrics or None,
            last_checkpoint={
                "path": str(point.checkpoint),
                "epoch": p.epoch,
                "batch": p.batch_in_epoch,
                "step": p.step,
            },
            best=self._best(p) if p.best_step >= 0 else None,
        )

    def progress(self, state: str, p: TrainProgress, *, rate: float, eta: Eta, **fields: Any) -> None:
        self._update(
            state=state,
            epoch=p.epoch,
            batch=p.batch_in_epoch,
            batches=self.batches,
            step=p.step,
            images_per_s=round(rate, 2),
            epoch_eta_s=eta.epoch_s,
            run_eta_s=eta.run_s,
            **fields,
        )

    def evaluated(self, metrics: dict[str, Any], p: TrainProgress) -> None:
        self._update(last_metrics=summary(metrics), best=self._best(p))

    def checkpointed(self, path: Path, p: TrainProgress) -> None:
        self._update(
            force=True,
            last_checkpoint={
                "path": str(path),
                "time": _now(),
                "epoch": p.epoch,
                "batch": p.batch_in_epoch,
                "step": p.step,
            },
        )

    def ended(self, p: TrainProgress, *, finished: bool, stopped_by: str) -> None:
        self._update(
            state="finished" if finished else "stopped",
            force=True,
            stopped_by=stopped_by,
            epoch=p.epoch,
            batch=p.batch_in_epoch,
            step=p.step,
        )

    def failed(self, exc: BaseException) -> None:
        self._update(state="failed", force=True, error=f"{type(exc).__name__}: {exc}")


class ProgressLine:
    """Off a terminal, on rank 0: one ``log.info`` line with ``key=value`` fields every ``progress_every_s``."""

    def __init__(self, cfg: TrainConfig, *, rank: int, batches: int) -> None:
        self.cfg, self.rank, self.batches = cfg, rank, batches
        self._logged_at = time.monotonic()

    def log(self, p: TrainProgress, *, rate: float, eta: Eta, last_train: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if (
            self.rank != 0
            or sys.stderr.isatty()
            or (not force and now - self._logged_at < self.cfg.record.progress_every_s)
        ):
            return
        self._logged_at = now
        loss, lr = last_train.get("train_loss"), last_train.get("lr")
        log.info(
            "epoch %d/%d batch %d/%d step %d: loss %s, lr %s, %.1f img/s, epoch ETA %s, run ETA %s",
            p.epoch + 1,
            self.cfg.schedule.epochs,
            p.batch_in_epoch,
            self.batches,
            p.step,
            f"{loss:.4f}" if loss is not None else "?",
            f"{lr:.3g}" if lr is not None else "?",
            rate,
            format_seconds(eta.epoch_s),
            format_seconds(eta.run_s),
            extra={
                "kv": {
                    "epoch": p.epoch,
                    "batch": p.batch_in_epoch,
                    "step": p.step,
                    "loss": loss,
                    "lr": lr,
                    "img_per_s": round(rate, 1),
                    "epoch_eta_s": eta.epoch_s,
                    "run_eta_s": eta.run_s,
                }
            },
        )
