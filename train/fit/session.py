"""The epoch loop of a run, and what it decides around each optimizer update: when to evaluate, when
to stop (a signal, all-reduced so every rank stops at the same step), when to write ``last.pt``
(``CheckpointSaver.due``), when early stopping ends the run. What it reports goes through one
``Pace`` (rate and ETA, measured once per update), the run's ``RunReport`` (``status.json``) and
``RunRecord`` (``metrics.jsonl``, curves); the checkpoint files are the ``CheckpointSaver``'s.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch.distributed as dist

from pawpipe.common.progress import progress as progress_bar
from pawpipe.train.data.batch import Batch, Loader
from pawpipe.train.fit.checkpoint import TrainProgress
from pawpipe.train.fit.checkpoint_saver import CheckpointSaver
from pawpipe.train.fit.context import RunContext
from pawpipe.train.fit.device import any_rank
from pawpipe.train.fit.dynamics import EpochDynamics
from pawpipe.train.fit.evaluate import evaluate
from pawpipe.train.fit.metrics import summary
from pawpipe.train.fit.pace import Eta, Pace, format_seconds
from pawpipe.train.fit.report import ProgressLine, RunReport
from pawpipe.train.fit.runrecord import RunRecord
from pawpipe.train.fit.trainer import Trainer, UpdateInfo
from pawpipe.train.rundir.signals import RunSignals

log = logging.getLogger(__name__)


def early_stopping_update(progress: TrainProgress, value: float, *, patience: int) -> bool:
    """Keras-style: after each epoch, True once the monitored validation loss has not improved
    (strictly decreased) for ``patience`` epochs in a row; ``patience`` 0 never stops."""
    if math.isfinite(value) and value < progress.monitor_best:
        progress.monitor_best, progress.bad_epochs = value, 0
    else:
        progress.bad_epochs += 1
    return patience > 0 and progress.bad_epochs >= patience


class _Stopped(Exception):
    """A stop was requested while evaluating; the evaluation is abandoned (it is redone on resume)."""


class _StopAware:
    """An evaluation loader that gives up between batches once a stop is requested (single process:
    on several ranks an evaluation always completes, since every rank must join its all-reduce)."""

    def __init__(self, loader: Loader, signals: RunSignals) -> None:
        self.loader, self.signals = loader, signals

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            if self.signals.stop_requested:
                raise _Stopped
            yield batch


class Session:
    """Train from the trainer's progress to the end of the run (``fit``); returns what stopped it."""

    def __init__(
        self, ctx: RunContext, trainer: Trainer, record: RunRecord, saver: CheckpointSaver, report: RunReport
    ) -> None:
        self.cfg = ctx.cfg
        self.trainer, self.record, self.saver, self.report = trainer, record, saver, report
        self.train_loader, self.val_loader = ctx.train_loader, ctx.val_loader
        self.vocabulary = ctx.vocabulary
        self.precision, self.device = ctx.precision, ctx.device
        self.signals = ctx.signals
        self.rank, self.world = ctx.rank, ctx.world
        self.last_metrics: dict[str, Any] = {}
        self.last_train: dict[str, Any] = {}  # the latest `train` log values (loss, lr): the progress line shows them
        self.dynamics: EpochDynamics | None = None
        batches = len(ctx.train_loader)
        self.pace = Pace(
            batches=batches,
            batch_size=ctx.train_loader.batch_size,
            world=ctx.world,
            epochs=ctx.cfg.schedule.epochs,
            every_s=ctx.cfg.record.status_every_s,
            samples_seen=self.progress.samples_seen,
        )
        self.progress_line = ProgressLine(ctx.cfg, rank=ctx.rank, batches=batches)

    @property
    def progress(self) -> TrainProgress:
        return self.trainer.progress

    # -- the epochs -------------------------------------------------------------------------------------
    def fit(self) -> str:
        cfg, p = self.cfg, self.progress
        if p.stopped_by:
            log.info("the run already stopped (%s) after epoch %d; nothing to do", p.stopped_by, p.epoch)
            return p.stopped_by
        while p.epoch < cfg.schedule.epochs:
            epoch = p.epoch
            self.train_loader.set_epoch(epoch)
            if p.batch_in_epoch < len(self.train_loader):
                if not self._train_one_epoch(epoch):
                    return self._stopped()  # the checkpoint was written at the step where it stopped
                p.batch_in_epoch = len(self.train_loader)  # trained; evaluated next
            try:
                metrics = self._evaluate(end_of_epoch=True)
            except _Stopped:
                self._save_last()
                return self._stopped()
            p.epoch, p.batch_in_epoch = epoch + 1, 0
            if early_stopping_update(p, metrics[cfg.eval.monitor], patience=cfg.eval.patience):
                p.stopped_by = "early_stopping"
            self._save_last()
            if p.stopped_by:
                log.info(
                    "early stopping after epoch %d: validation %s has not improved for %d epochs (best %.4f)",
                    epoch + 1,
                    cfg.eval.monitor,
                    p.bad_epochs,
                    p.monitor_best,
                )
                return p.stopped_by
            if p.epoch < cfg.schedule.epochs and self._decide(checkpoint_due=False)[0]:
                return self._stopped()
        return "epochs"

    def _stopped(self) -> str:
        reason = (self.signals.stop_requested if self.signals is not None else None) or "stop"
        p = self.progress
        log.info(
            "stopped by %s at epoch %d, batch %d, step %d; `train run --out %s` resumes here",
            reason,
            p.epoch + 1,
            p.batch_in_epoch,
            p.step,
            self.record.dir,
        )
        return reason

    def _decide(self, *, checkpoint_due: bool) -> tuple[bool, bool]:
        """(stop, checkpoint now), the same on every rank."""
        stop = self.signals is not None and self.signals.stop_requested is not None
        requested = self.signals is not None and self.signals.take_checkpoint_request()
        stop, checkpoint = any_rank([stop, requested or checkpoint_due], device=self.device)
        return stop, checkpoint

    def _train_one_epoch(self, epoch: int) -> bool:
        """Train the rest of ``epoch``; False when a stop ended it early (after its checkpoint)."""
        cfg, loader, p = self.cfg, self.train_loader, self.progress
        batches = len(loader)
        if cfg.record.dynamics:
            self.dynamics = EpochDynamics(
                self.record.dynamics,
                epoch,
                start_batch=p.batch_in_epoch,
                rank=self.rank,
                world_size=self.world,
                rows_per_group=cfg.record.dynamics_rows_per_group,
            )
        bar = progress_bar(
            batches * loader.batch_size,
            desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}",
            unit="img",
            disable=not cfg.record.progress or self.rank != 0 or not sys.stderr.isatty(),
        )
        bar.update(p.batch_in_epoch * loader.batch_size)
        done = [p.batch_in_epoch]
        self.pace.restart(p.samples_seen)
        self.trainer.reset_running()  # the previous epoch's evaluation and checkpoint are not training time
        self._report("training")

        def on_update(info: UpdateInfo) -> bool:
            bar.update((info.batch_in_epoch - done[0]) * loader.batch_size)
            done[0] = info.batch_in_epoch
            last = info.batch_in_epoch == info.batches_per_epoch
            eta = self.pace.measure(p)
            if info.step % cfg.record.log_every_steps == 0 or last:
                self.last_train = {"lr": info.lr, **self.trainer.take_running()}
                self.record.log(
                    "train",
                    step=info.step,
                    epoch=epoch,
                    batch=info.batch_in_epoch,
                    **self.last_train,
                    nonfinite_total=p.nonfinite_total,
                    eta_s=eta.epoch_s,
                )
                bar.set_postfix(
                    loss=f"{self.last_train['train_loss']:.4f}",
                    lr=f"{info.lr:.2e}",
                    run_eta=format_seconds(eta.run_s),
                    refresh=False,
                )
            self._report("training", eta=eta, force_log=last, lr=info.lr)
            if cfg.eval.every_steps and info.step % cfg.eval.every_steps == 0 and not last:
                paused = time.perf_counter()
                try:
                    self._evaluate(end_of_epoch=False)
                except _Stopped:
                    pass  # the stop below checkpoints; this evaluation is not repeated
                self._report("training")
                self.trainer.exclude_time(time.perf_counter() - paused)
            stop, checkpoint = self._decide(checkpoint_due=not last and self.saver.due(info.step))
            if stop or checkpoint:
                paused = time.perf_counter()
                self._save_last()
                self.trainer.exclude_time(time.perf_counter() - paused)
            return stop

        try:
            complete = self.trainer.train_epoch(loader, dynamics=self.dynamics, on_update=on_update)
        except BaseException:
            if self.dynamics is not None:
                self.dynamics.abort()  # rows after the last checkpoint: trained again on resume
            raise
        finally:
            bar.close()
        if self.dynamics is not None:
            self.dynamics.close(batches if complete else p.batch_in_epoch)
            self.dynamics = None
        return complete

    def _report(self, state: str, *, eta: Eta | None = None, force_log: bool = False, **fields: Any) -> None:
        """Where the run is, at the pace measured now (or at ``eta``, measured this update): ``status.json``
        and the progress line."""
        if eta is None:
            eta = self.pace.measure(self.progress)
        self.report.progress(state, self.progress, rate=self.pace.rate, eta=eta, **fields)
        self.progress_line.log(self.progress, rate=self.pace.rate, eta=eta, last_train=self.last_train, force=force_log)

    # -- evaluation and checkpoints -----------------------------------------------------------------------
    def _evaluate(self, *, end_of_epoch: bool) -> dict[str, Any]:
        cfg, p = self.cfg, self.progress
        self._report("evaluating")
        started = time.perf_counter()
        model = self.trainer.eval_model()
        if self.world > 1:
            for buffer in model.buffers():  # BatchNorm statistics drift apart per rank: evaluate rank 0's
                dist.broadcast(buffer, src=0)
        loader = (
            _StopAware(self.val_loader, self.signals)
            if self.signals is not None and self.world == 1
            else self.val_loader
        )
        metrics = evaluate(
            model,
            loader,
            loss_fn=self.trainer.loss_fn,
            vocabulary=self.vocabulary,
            device=self.device,
            precision=self.precision,
            channels_last=cfg.compute.channels_last,
        )
        self.last_metrics = metrics
        epoch = p.epoch + 1 if end_of_epoch else p.epoch
        self.record.log(
            "eval",
            step=p.step,
            epoch=epoch if end_of_epoch else p.epoch + p.batch_in_epoch / max(len(self.train_loader), 1),
            end_of_epoch=end_of_epoch,
            weights="ema" if self.trainer.ema is not None else "model",
            seconds=round(time.perf_counter() - started, 2),
            **metrics,
        )
        p.history.append({"step": p.step, "epoch": epoch, **summary(metrics)})
        self.saver.consider_best(metrics, epoch=epoch)
        log.info(
            "eval at step %d: loss %.4f, accuracy %.4f, macro-F1 %.4f over %d samples",
            p.step,
            metrics["loss"],
            metrics["accuracy"],
            metrics["macro_f1"],
            metrics["count"],
        )
        self.record.write_curves()
        self.report.evaluated(metrics, p)
        return metrics

    def _save_last(self) -> None:
        """``last.pt`` at this step; the dynamics part up to here is published first (see train.fit.dynamics)."""
        p = self.progress
        if self.dynamics is not None and 0 < p.batch_in_epoch:
            self.dynamics.cut(p.batch_in_epoch)
        self.report.checkpointed(self.saver.save_last(self.last_metrics), p)
