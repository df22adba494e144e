"""``train run``: epochs of training with whole-set validation, checkpoints, early stopping and resume.

The run directory is the unit of work. ``run_training``:

1. takes the directory's lock (``train.lock``: a second trainer is refused, a dead one's lock is
   taken over);
2. resumes from the directory's own ``checkpoints/last.pt`` when there is one (``train.fit.resume``:
   the same config, or a one-line refusal; what was written after that checkpoint is removed
   first), else from ``resume_from`` (another run's checkpoint), else starts from scratch;
   ``new=True`` first moves an existing directory aside;
3. trains; after every optimizer update it may write ``last.pt`` mid-epoch (every
   ``checkpoint.every_minutes`` / ``every_steps``, on SIGUSR1, on a stop), stops cleanly on
   SIGTERM/SIGINT (``train.daemon.signals``), and keeps ``status.json`` current (``train.daemon.status``).

A mid-epoch checkpoint holds ``progress.batch_in_epoch`` and the loader's ``state_dict()`` (for
DALI, the pipeline's own checkpoint: reader position, shuffle buffer, augmentation RNGs), so a
resumed run trains the rest of the epoch's batches exactly once, in the same order, at the
learning rates of an uninterrupted run (a pure function of the step). ``batch_in_epoch ==
batches`` marks an epoch trained but not yet evaluated (a stop during the epoch-end evaluation):
a restart evaluates it first.

On several ranks (torchrun) every rank trains its part of the data; rank 0 alone takes the lock,
decides where to resume (broadcast to the others), and writes checkpoints, status and the record.
Stop and checkpoint decisions are all-reduced after every update, so all ranks stop at the same
step and none is left waiting in a collective.

``train_from_config`` is what the CLI calls: it joins torchrun's process group when there is one,
reads ``dataset.json`` and opens the real shard loaders through ``train.data.loader.open_loader``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from common.progress import progress as progress_bar
from train.data.batch import Batch, Loader
from train.fit.checkpoint import (
    LAST,
    PREVIOUS,
    TrainProgress,
    load_checkpoint,
    rank_state,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from train.config import TrainConfig
from train.data.dataset import DatasetInfo, read_dataset_info
from train.data.loader import open_loader
from train.fit.device import (
    Precision,
    any_rank,
    broadcast_object,
    gather_objects,
    init_distributed,
    rank_and_world,
    rank_seed,
    resolve_device,
    resolve_precision,
    resolve_sync_bn,
    seed_everything,
)
from train.fit.dynamics import EpochDynamics
from train.fit.evaluate import evaluate
from train.daemon.lock import RunLock, RunLocked
from train.fit.logs import run_log
from train.fit.loop import Trainer, UpdateInfo
from train.fit.loss import ClassWeightedCE
from train.fit.model import build_model, place_model
from train.fit.optim import build_optimizer
from train.fit.resume import ResumePoint, clean_after, find_resume_point, move_aside
from train.fit.runrecord import RunRecord
from train.fit.schedule import WarmupCosine, optimizer_steps_per_epoch
from train.daemon.signals import RunSignals
from train.daemon.status import StatusWriter

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    progress: TrainProgress
    last_metrics: dict[str, Any]
    best_checkpoint: Path
    last_checkpoint: Path
    stopped_by: str  # "epochs" | "early_stopping" | the signal that stopped it ("SIGTERM", "SIGINT")
    resumed_from: Path | None = None

    @property
    def finished(self) -> bool:
        return self.stopped_by in ("epochs", "early_stopping")


@dataclass(frozen=True)
class RunContext:
    """What one ``run_training`` call trains with, decided once when the run directory is claimed and
    handed down whole: the config, the directory and where it resumes, the data, the placement."""

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


def _new_run_dir(cfg: TrainConfig) -> Path:
    """``out_dir/run_name``; without a name, a new timestamped folder every time."""
    if cfg.run_name:
        return cfg.out_dir / cfg.run_name
    name = time.strftime("%Y%m%d-%H%M%S")
    path = cfg.out_dir / name
    suffix = 1
    while path.exists() and any(path.iterdir()):
        path = cfg.out_dir / f"{name}-{suffix}"
        suffix += 1
    return path


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("count", "loss", "nll", "accuracy", "macro_f1", "macro_recall") if k in metrics}


def _has_content(folder: Path) -> bool:
    return folder.is_dir() and any(p.name != "train.lock" for p in folder.iterdir())


def _claim_run_dir(
    run_dir: Path, cfg: TrainConfig, *, vocabulary: list[str], resume_from: str | Path | None, new: bool
) -> tuple[RunLock, ResumePoint, dict[str, int]]:
    """Rank 0: lock the directory (moving an old one aside for ``new``), find where to resume, clean up."""
    lock = RunLock(run_dir).acquire()
    try:
        if lock.took_over:
            log.warning("%s: took over the lock of pid %s (gone; it did not stop cleanly)", run_dir, lock.took_over.get("pid"))
        if new and _has_content(run_dir):
            aside = move_aside(run_dir)  # the held lock moves with it, so no one trains into it meanwhile
            lock.release()
            lock = RunLock(run_dir).acquire()
            log.info("--new: moved the previous contents of %s to %s", run_dir, aside)
        point = find_resume_point(run_dir, cfg.model_dump(mode="json"), vocabulary=vocabulary, resume_from=resume_from)
        removed = clean_after(run_dir, point)
    except BaseException:
        lock.release()
        raise
    return lock, point, removed


def run_training(
    cfg: TrainConfig,
    *,
    train_loader: Loader,
    val_loader: Loader,
    vocabulary: list[str],
    class_weights: list[float] | None,
    run_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    new: bool = False,
    signals: RunSignals | None = None,
    dataset: dict[str, Any] | None = None,
) -> RunResult:
    """Train ``run_dir`` (default ``out_dir/run_name``) to ``cfg.schedule.epochs`` epochs, early
    stopping or a stop signal; resume it when it holds a checkpoint (module docstring).

    ``signals``: the process's installed ``RunSignals`` (the CLI installs them); None: nothing stops
    the run from outside.
    """
    rank, world = rank_and_world()
    seed_everything(rank_seed(cfg.seed, rank), deterministic=cfg.compute.deterministic)
    device = resolve_device(cfg.compute.device)
    precision = resolve_precision(cfg.compute.amp, device)
    if device.type == "cpu" and cfg.compute.cpu_threads:
        torch.set_num_threads(cfg.compute.cpu_threads)
    run_dir = Path(broadcast_object(str(run_dir if run_dir is not None else _new_run_dir(cfg))))

    lock, removed = None, {}
    claimed: tuple[str, str] | ResumePoint | None = None
    if rank == 0:
        try:
            lock, claimed, removed = _claim_run_dir(run_dir, cfg, vocabulary=vocabulary, resume_from=resume_from, new=new)
        except (RunLocked, ValueError) as exc:
            claimed = (type(exc).__name__, str(exc))
            if world == 1:
                raise
    claimed = broadcast_object(claimed)
    if isinstance(claimed, tuple):  # rank 0 refused: every rank says why and stops
        raise (RunLocked if claimed[0] == "RunLocked" else ValueError)(claimed[1])
    ctx = RunContext(cfg=cfg, run_dir=run_dir, point=claimed, removed=removed, train_loader=train_loader, val_loader=val_loader,
                     vocabulary=vocabulary, class_weights=class_weights, device=device, precision=precision, signals=signals,
                     dataset=dataset, rank=rank, world=world)  # fmt: skip
    try:
        return _run_claimed(ctx)
    finally:
        if lock is not None:
            lock.release()


def _run_claimed(ctx: RunContext) -> RunResult:
    cfg, run_dir, rank, world = ctx.cfg, ctx.run_dir, ctx.rank, ctx.world
    status = StatusWriter(run_dir, every_s=cfg.record.status_every_s) if rank == 0 else None
    if status is not None:
        status.update(state="starting", run_dir=str(run_dir), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      epochs=cfg.schedule.epochs, world_size=world, error=None)  # fmt: skip
    try:
        with run_log(run_dir / "train.log", enabled=rank == 0):  # every start and resume of the run, appended
            result = _train(ctx, status)
    except BaseException as exc:
        if status is not None:
            status.update(state="failed", force=True, error=f"{type(exc).__name__}: {exc}")
        raise
    if status is not None:
        p = result.progress
        status.update(state="finished" if result.finished else "stopped", force=True, stopped_by=result.stopped_by,
                      epoch=p.epoch, batch=p.batch_in_epoch, step=p.step)  # fmt: skip
    return result


def _train(ctx: RunContext, status: StatusWriter | None) -> RunResult:
    cfg, point, run_dir, rank, world = ctx.cfg, ctx.point, ctx.run_dir, ctx.rank, ctx.world
    train_loader, vocabulary, class_weights, device, precision = (
        ctx.train_loader, ctx.vocabulary, ctx.class_weights, ctx.device, ctx.precision)  # fmt: skip
    model = build_model(
        len(vocabulary),
        arch=cfg.model.arch,
        drop_rate=cfg.model.drop_rate,
        drop_path_rate=cfg.model.drop_path_rate,
        pretrained=cfg.model.pretrained,
        freeze_bn=cfg.model.freeze_bn,
    )
    model = place_model(model, device, channels_last=cfg.compute.channels_last)  # before the optimizer sees it
    sync_bn = resolve_sync_bn(cfg.compute.sync_bn, device=device, world_size=world, batch_size=cfg.data.batch_size)
    steps_per_epoch = optimizer_steps_per_epoch(len(train_loader), cfg.optim.accumulate)
    schedule = WarmupCosine(
        lr=cfg.optim.lr,
        min_lr=cfg.schedule.min_lr,
        warmup_steps=min(cfg.schedule.warmup_for(steps_per_epoch), cfg.schedule.epochs * steps_per_epoch),
        total_steps=cfg.schedule.epochs * steps_per_epoch,
    )
    trainer = Trainer(
        model,
        optimizer=build_optimizer(model, cfg.optim),
        loss_fn=ClassWeightedCE(class_weights, label_smoothing=cfg.loss.label_smoothing),
        schedule=schedule,
        precision=precision,
        device=device,
        accumulate=cfg.optim.accumulate,
        clip_grad_norm=cfg.optim.clip_grad_norm,
        channels_last=cfg.compute.channels_last,
        compile=cfg.compute.compile,
        ema_decay=cfg.optim.ema_decay,
        max_nonfinite_in_a_row=cfg.record.max_nonfinite_in_a_row,
        freeze_groups=cfg.model.freeze_groups,
        freeze_steps=cfg.model.freeze_steps,
        sync_bn=sync_bn,
        progress=TrainProgress(best_metric=cfg.eval.best_metric),
    )
    rng = None
    if point.checkpoint is not None:
        state = load_checkpoint(point.checkpoint, map_location="cpu")  # RNG states must stay CPU tensors
        trainer.load_state_dict(state)
        own = rank_state(state, rank, world)  # this rank's data position and random streams
        train_loader.load_state_dict(own["loader"])
        rng = own["rng"]
        if point.own and state.get("schedule") not in (None, asdict(schedule)):
            raise ValueError(f"{point.checkpoint}: learning-rate schedule {state['schedule']} differs from this run's "
                             f"{asdict(schedule)} (did the number of training samples change?); start over with --new")  # fmt: skip
        p = trainer.progress
        log.info(
            "resuming from %s: epoch %d, batch %d of %d, step %d%s", point.checkpoint, p.epoch + 1, p.batch_in_epoch,
            len(train_loader), p.step, "" if point.own else " (another run's checkpoint; this run's config)",
        )  # fmt: skip
        if any(ctx.removed.values()):
            log.info("removed what the interrupted process wrote after that checkpoint: %s", ctx.removed)
        if status is not None and point.own:
            status.update(last_metrics=state.get("metrics") or None, last_checkpoint={
                "path": str(point.checkpoint), "epoch": p.epoch, "batch": p.batch_in_epoch, "step": p.step},
                best={"metric": cfg.eval.best_metric, "value": p.best_value, "epoch": p.best_epoch, "step": p.best_step}
                if p.best_step >= 0 else None)  # fmt: skip

    record = RunRecord(run_dir, enabled=rank == 0, resume_step=point.step if point.own else None,
                       best_metric=cfg.eval.best_metric)
    n_params = sum(p.numel() for p in model.parameters())
    resumed = None
    if point.own:
        resumed = {"from": str(point.checkpoint), "epoch": point.epoch, "batch": point.batch, "step": point.step}
        record.log("resume", step=point.step, epoch=point.epoch, batch=point.batch, checkpoint=str(point.checkpoint), removed=ctx.removed)
    record.write_start(
        cfg.model_dump(mode="json"),
        seed=cfg.seed,
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        extra={
            "precision": precision.name,
            "world_size": world,
            "sync_bn": sync_bn,
            "parameters": n_params,
            "init": str(cfg.model.pretrained) if cfg.model.pretrained else "random",
            "vocabulary": vocabulary,
            "class_weights": class_weights,
            "batches_per_epoch": len(train_loader),
            "steps_per_epoch": steps_per_epoch,
            "warmup_steps": schedule.warmup_steps,
            "total_steps": schedule.total_steps,
            "dataset": ctx.dataset,
            "resume_from": str(point.checkpoint) if point.checkpoint is not None and not point.own else None,
        },
        resumed=resumed,
    )
    log.info(
        "training %s (%d parameters, %s init) on %s, %s; %d epochs x %d steps, warm-up %d; run dir %s",
        cfg.model.arch, n_params, "pretrained" if cfg.model.pretrained else "random", device, precision.name,
        cfg.schedule.epochs, steps_per_epoch, schedule.warmup_steps, run_dir,
    )  # fmt: skip
    session = _Session(ctx, trainer, record, status)
    if point.own:
        session.last_metrics = dict(state.get("metrics") or {})  # until the next evaluation
    if rng is not None:
        restore_rng(rng)  # last thing before training: the same random draws as the uninterrupted run
    try:
        stopped_by = session.fit()
    finally:
        record.close()
    return RunResult(
        run_dir=run_dir,
        progress=trainer.progress,
        last_metrics=session.last_metrics,
        best_checkpoint=record.checkpoints / "best.pt",
        last_checkpoint=record.checkpoints / LAST,
        stopped_by=stopped_by,
        resumed_from=point.checkpoint,
    )


def _normalize(loader: Loader) -> dict[str, list[float]] | None:
    """The input normalisation the model trains with (0-255 scale): evaluation and prediction of its
    checkpoints use these, whatever shards they read."""
    spec = getattr(loader, "spec", None)
    return {"mean": list(spec.mean), "std": list(spec.std)} if spec is not None else None


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    hours, rest = divmod(int(round(value)), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


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


class _Session:
    """The epoch loop and what happens around each update: logs, status, checkpoints, stops."""

    def __init__(self, ctx: RunContext, trainer: Trainer, record: RunRecord, status: StatusWriter | None) -> None:
        self.cfg = ctx.cfg
        self.trainer = trainer
        self.record = record
        self.train_loader, self.val_loader = ctx.train_loader, ctx.val_loader
        self.vocabulary = ctx.vocabulary
        self.precision, self.device = ctx.precision, ctx.device
        self.signals, self.status = ctx.signals, status
        self.last_metrics: dict[str, Any] = {}
        self.last_train: dict[str, Any] = {}  # the latest `train` log values (loss, lr): the progress line shows them
        self.rank, self.world = ctx.rank, ctx.world
        self.dynamics: EpochDynamics | None = None
        self._saved_at = time.monotonic()
        self._rate_mark = (time.monotonic(), self.progress.samples_seen)
        self._rate = 0.0
        self._logged_at = time.monotonic()

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
            if self._early_stop(metrics):
                p.stopped_by = "early_stopping"
            self._save_last()
            if p.stopped_by:
                log.info(
                    "early stopping after epoch %d: validation %s has not improved for %d epochs (best %.4f)",
                    epoch + 1, cfg.eval.monitor, p.bad_epochs, p.monitor_best,
                )  # fmt: skip
                return p.stopped_by
            if p.epoch < cfg.schedule.epochs and self._decide(checkpoint_due=False)[0]:
                return self._stopped()
        return "epochs"

    def _stopped(self) -> str:
        reason = (self.signals.stop_requested if self.signals is not None else None) or "stop"
        p = self.progress
        log.info("stopped by %s at epoch %d, batch %d, step %d; `train run --out %s` resumes here",
                 reason, p.epoch + 1, p.batch_in_epoch, p.step, self.record.dir)  # fmt: skip
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
            self.dynamics = EpochDynamics(self.record.dynamics, epoch, start_batch=p.batch_in_epoch, rank=self.rank,
                                          world_size=self.world, rows_per_group=cfg.record.dynamics_rows_per_group)  # fmt: skip
        bar = progress_bar(
            batches * loader.batch_size, desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}", unit="img",
            disable=not cfg.record.progress or self.rank != 0 or not sys.stderr.isatty(),
        )  # fmt: skip
        bar.update(p.batch_in_epoch * loader.batch_size)
        started, start_batch = time.perf_counter(), p.batch_in_epoch
        done = [start_batch]
        self._rate_mark = (time.monotonic(), p.samples_seen)
        self.trainer.reset_running()  # the previous epoch's evaluation and checkpoint are not training time
        self._status("training")

        def on_update(info: UpdateInfo) -> bool:
            bar.update((info.batch_in_epoch - done[0]) * loader.batch_size)
            done[0] = info.batch_in_epoch
            last = info.batch_in_epoch == info.batches_per_epoch
            if info.step % cfg.record.log_every_steps == 0 or last:
                per_batch = (time.perf_counter() - started) / max(info.batch_in_epoch - start_batch, 1)
                self.last_train = {"lr": info.lr, **self.trainer.take_running()}
                self.record.log(
                    "train", step=info.step, epoch=epoch, batch=info.batch_in_epoch, **self.last_train,
                    nonfinite_total=p.nonfinite_total, eta_s=round(per_batch * (info.batches_per_epoch - info.batch_in_epoch), 1),
                )  # fmt: skip
                bar.set_postfix(loss=f"{self.last_train['train_loss']:.4f}", lr=f"{info.lr:.2e}",
                                run_eta=_seconds(self._etas()[1]), refresh=False)  # fmt: skip
            self._status("training", force_log=last, lr=info.lr)
            if cfg.eval.every_steps and info.step % cfg.eval.every_steps == 0 and not last:
                paused = time.perf_counter()
                try:
                    self._evaluate(end_of_epoch=False)
                except _Stopped:
                    pass  # the stop below checkpoints; this evaluation is not repeated
                self._status("training")
                self.trainer.exclude_time(time.perf_counter() - paused)
            stop, checkpoint = self._decide(checkpoint_due=not last and self._checkpoint_due(info.step))
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

    def _checkpoint_due(self, step: int) -> bool:
        every = self.cfg.checkpoint
        if every.every_steps and step % every.every_steps == 0:
            return True
        return every.every_minutes > 0 and time.monotonic() - self._saved_at >= every.every_minutes * 60

    # -- status and progress lines ------------------------------------------------------------------------
    def _status(self, state: str, *, force_log: bool = False, **fields: Any) -> None:
        now, p = time.monotonic(), self.progress
        mark_time, mark_samples = self._rate_mark
        if now > mark_time and (now - mark_time >= max(self.cfg.record.status_every_s, 1.0) or not self._rate):
            self._rate = (p.samples_seen - mark_samples) * self.world / (now - mark_time)  # over the last interval
            if now - mark_time >= max(self.cfg.record.status_every_s, 1.0):
                self._rate_mark = (now, p.samples_seen)
        epoch_eta, run_eta = self._etas()
        if self.status is not None:
            self.status.update(
                state=state, epoch=p.epoch, batch=p.batch_in_epoch, batches=len(self.train_loader), step=p.step,
                images_per_s=round(self._rate, 2), epoch_eta_s=epoch_eta, run_eta_s=run_eta, **fields,
            )  # fmt: skip
        self._log_progress(epoch_eta, run_eta, force=force_log)

    def _etas(self) -> tuple[float | None, float | None]:
        """Seconds of training left in this epoch and in the whole run (at the current rate; evaluations
        excluded; early stopping may end the run sooner)."""
        if self._rate <= 0:
            return None, None
        p, batches = self.progress, len(self.train_loader)
        per_batch = self.train_loader.batch_size * self.world / self._rate
        left_in_epoch = max(batches - p.batch_in_epoch, 0)
        later = max(self.cfg.schedule.epochs - p.epoch - 1, 0) * batches
        return round(left_in_epoch * per_batch, 1), round((left_in_epoch + later) * per_batch, 1)

    def _log_progress(self, epoch_eta: float | None, run_eta: float | None, *, force: bool = False) -> None:
        """Off a terminal (journald, a log file), a plain progress line every ``record.progress_every_s``;
        on a terminal the bar shows the same (loss, lr, ETA) as its postfix."""
        now = time.monotonic()
        if self.rank != 0 or sys.stderr.isatty() or (not force and now - self._logged_at < self.cfg.record.progress_every_s):
            return
        self._logged_at = now
        p, batches, last = self.progress, len(self.train_loader), self.last_train
        loss, lr = last.get("train_loss"), last.get("lr")
        log.info("epoch %d/%d batch %d/%d step %d: loss %s, lr %s, %.1f img/s, epoch ETA %s, run ETA %s",
                 p.epoch + 1, self.cfg.schedule.epochs, p.batch_in_epoch, batches, p.step,
                 f"{loss:.4f}" if loss is not None else "?", f"{lr:.3g}" if lr is not None else "?", self._rate,
                 _seconds(epoch_eta), _seconds(run_eta),
                 extra={"kv": {"epoch": p.epoch, "batch": p.batch_in_epoch, "step": p.step, "loss": loss, "lr": lr,
                               "img_per_s": round(self._rate, 1), "epoch_eta_s": epoch_eta, "run_eta_s": run_eta}})  # fmt: skip

    # -- evaluation and checkpoints -----------------------------------------------------------------------
    def _evaluate(self, *, end_of_epoch: bool) -> dict[str, Any]:
        cfg, p = self.cfg, self.progress
        self._status("evaluating")
        started = time.perf_counter()
        model = self.trainer.eval_model()
        if self.world > 1:
            for buffer in model.buffers():  # BatchNorm statistics drift apart per rank: evaluate rank 0's
                dist.broadcast(buffer, src=0)
        loader = _StopAware(self.val_loader, self.signals) if self.signals is not None and self.world == 1 else self.val_loader
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
            "eval", step=p.step, epoch=epoch if end_of_epoch else p.epoch + p.batch_in_epoch / max(len(self.train_loader), 1),
            end_of_epoch=end_of_epoch, weights="ema" if self.trainer.ema is not None else "model",
            seconds=round(time.perf_counter() - started, 2), **metrics,
        )  # fmt: skip
        p.history.append({"step": p.step, "epoch": epoch, **_summary(metrics)})
        value = metrics[cfg.eval.best_metric]
        if math.isfinite(value) and value > p.best_value:
            p.best_value, p.best_epoch, p.best_step = value, epoch, p.step
            self._save("best.pt")
            log.info("new best validation %s %.4f at step %d", cfg.eval.best_metric, value, p.step)
        log.info(
            "eval at step %d: loss %.4f, accuracy %.4f, macro-F1 %.4f over %d samples",
            p.step, metrics["loss"], metrics["accuracy"], metrics["macro_f1"], metrics["count"],
        )  # fmt: skip
        self.record.write_curves()
        if self.status is not None:
            self.status.update(last_metrics=_summary(metrics), best={
                "metric": cfg.eval.best_metric, "value": p.best_value, "epoch": p.best_epoch, "step": p.best_step})  # fmt: skip
        return metrics

    def _early_stop(self, metrics: dict[str, Any]) -> bool:
        return early_stopping_update(self.progress, metrics[self.cfg.eval.monitor], patience=self.cfg.eval.patience)

    def _save_last(self) -> None:
        """``last.pt`` at this step; the dynamics part up to here is published first (see train.fit.dynamics)."""
        p = self.progress
        if self.dynamics is not None and 0 < p.batch_in_epoch:
            self.dynamics.cut(p.batch_in_epoch)
        self._save(LAST, keep_previous=PREVIOUS)
        self._saved_at = time.monotonic()
        if self.status is not None:
            self.status.update(force=True, last_checkpoint={
                "path": str(self.record.checkpoints / LAST), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "epoch": p.epoch, "batch": p.batch_in_epoch, "step": p.step})  # fmt: skip

    def _save(self, name: str, *, keep_previous: str | None = None) -> None:
        """Every rank calls this at the same step (it gathers the ranks' own states); rank 0 writes."""
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
            "metrics": _summary(self.last_metrics),
        }
        if self.rank == 0:
            save_checkpoint(self.record.checkpoints / name, state, keep_previous=keep_previous)


def train_from_config(
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    new: bool = False,
    signals: RunSignals | None = None,
) -> RunResult:
    """``train run``: join torchrun's process group if any, read ``SHARDS/dataset.json``, open the
    train/val loaders, train (see ``run_training``)."""
    if cfg.data.shards is None:
        raise ValueError("data.shards: expected the shards folder (with dataset.json), got nothing")
    info: DatasetInfo = read_dataset_info(cfg.data.shards)
    created = init_distributed(cfg.compute.device)
    try:
        device = resolve_device(cfg.compute.device)
        rank, world = rank_and_world()
        # Half-precision images only where the model runs under autocast on a GPU (halves the copy).
        amp = device.type == "cuda" and resolve_precision(cfg.compute.amp, device).dtype is not None
        common = dict(image_size=cfg.data.image_size, device=str(device), seed=cfg.seed, backend=cfg.data.loader,
                      workers=cfg.data.workers, rank=rank, world_size=world, amp=amp)  # fmt: skip
        train_loader = open_loader(cfg.data.shards / cfg.data.train_split, train=True, batch_size=cfg.data.batch_size, **common)
        val_loader = open_loader(
            cfg.data.shards / cfg.data.val_split, train=False, batch_size=cfg.data.eval_batch_size or cfg.data.batch_size, **common
        )
        vocabulary, class_weights = info.vocabulary, info.weights(cfg.loss.class_weights)
        if cfg.audit.threshold_samples:  # AUM threshold samples: the labels of 1/(K+1) become class K
            from train.audit.threshold import with_threshold_samples

            train_loader, vocabulary, class_weights = with_threshold_samples(train_loader, vocabulary, class_weights, cfg.audit)
        return run_training(
            cfg,
            train_loader=train_loader,
            val_loader=val_loader,
            vocabulary=vocabulary,
            class_weights=class_weights,
            run_dir=run_dir,
            resume_from=resume_from,
            new=new,
            signals=signals,
            dataset={"path": str(cfg.data.shards), **info.model_dump(exclude={"vocabulary"})},
        )
    finally:
        if created:
            dist.destroy_process_group()
