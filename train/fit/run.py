"""``train run``: epochs of training with whole-set validation, checkpoints, early stopping and resume.

The run directory is the unit of work. ``run_training``:

1. takes the directory's lock (``train.lock``: a second trainer is refused, a dead one's lock is
   taken over);
2. resumes from the directory's own ``checkpoints/last.pt`` when there is one (``train.fit.resume``:
   the same config, or a one-line refusal; what was written after that checkpoint is removed
   first), else from ``resume_from`` (another run's checkpoint), else starts from scratch;
   ``new=True`` first moves an existing directory aside;
3. trains (``train.fit.session``: the epoch loop); after every optimizer update it may write
   ``last.pt`` mid-epoch (every ``checkpoint.every_minutes`` / ``every_steps``, on SIGUSR1, on a
   stop; the files are ``train.fit.checkpoint_saver``'s), stops cleanly on SIGTERM/SIGINT
   (``train.rundir.signals``), and keeps ``status.json`` current (``train.fit.report``).

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

What one run works with is decided once, in a ``RunContext`` (``train.fit.context``).

``train_from_config`` is what the CLI calls: it joins torchrun's process group when there is one,
reads ``dataset.json`` and opens the real shard loaders through ``train.data.loader.open_loader``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pawpipe.train.config import TrainConfig
from pawpipe.train.data.batch import Loader
from pawpipe.train.data.dataset import DatasetInfo, check_shards_folder, read_dataset_info
from pawpipe.train.data.loader import open_loader, resolve_data_config
from pawpipe.train.fit.build import Built, build, resume
from pawpipe.train.fit.checkpoint import TrainProgress, restore_rng
from pawpipe.train.fit.checkpoint_saver import CheckpointSaver
from pawpipe.train.fit.context import RunContext
from pawpipe.train.fit.device import (
    Placement,
    broadcast_object,
    init_distributed,
    rank_seed,
    resolve_placement,
    seed_everything,
)
from pawpipe.train.fit.logs import run_log
from pawpipe.train.fit.report import RunReport
from pawpipe.train.fit.resume import ResumePoint, clean_after, find_resume_point, move_aside
from pawpipe.train.fit.runrecord import RunRecord
from pawpipe.train.fit.session import Session
from pawpipe.train.rundir.lock import LOCK_FILE, RunLock, RunLocked
from pawpipe.train.rundir.signals import RunSignals

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


def named_run_dir(cfg: TrainConfig) -> Path | None:
    """``out_dir/run_name``; None when the config names no run (each run gets a new folder, ``_new_run_dir``)."""
    return cfg.out_dir / cfg.run_name if cfg.run_name else None


def _new_run_dir(cfg: TrainConfig) -> Path:
    """``out_dir/run_name``; without a name, a new timestamped folder every time."""
    if (named := named_run_dir(cfg)) is not None:
        return named
    name = time.strftime("%Y%m%d-%H%M%S")
    path = cfg.out_dir / name
    suffix = 1
    while path.exists() and any(path.iterdir()):
        path = cfg.out_dir / f"{name}-{suffix}"
        suffix += 1
    return path


def _has_content(folder: Path) -> bool:
    return folder.is_dir() and any(p.name != LOCK_FILE for p in folder.iterdir())


def _claim_run_dir(
    run_dir: Path, cfg: TrainConfig, *, vocabulary: list[str], resume_from: str | Path | None, new: bool
) -> tuple[RunLock, ResumePoint, dict[str, int]]:
    """Rank 0: lock the directory (moving an old one aside for ``new``), find where to resume, clean up."""
    lock = RunLock(run_dir).acquire()
    try:
        if lock.took_over:
            log.warning(
                "%s: took over the lock of pid %s (gone; it did not stop cleanly)", run_dir, lock.took_over.get("pid")
            )
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
    placement: Placement | None = None,
) -> RunResult:
    """Train ``run_dir`` (default ``out_dir/run_name``) to ``cfg.schedule.epochs`` epochs, early
    stopping or a stop signal; resume it when it holds a checkpoint (module docstring).

    ``signals``: the process's installed ``RunSignals`` (the CLI installs them); None: nothing stops
    the run from outside. ``placement``: the device, precision and rank the loaders were opened for
    (``train_from_config`` resolves it once); None: resolved here from ``cfg.compute``.
    """
    place = placement or resolve_placement(cfg.compute.device, cfg.compute.amp)
    rank, world, device = place.rank, place.world, place.device
    seed_everything(rank_seed(cfg.seed, rank), deterministic=cfg.compute.deterministic)
    if device.type == "cpu" and cfg.compute.cpu_threads:
        torch.set_num_threads(cfg.compute.cpu_threads)
    run_dir = Path(broadcast_object(str(run_dir if run_dir is not None else _new_run_dir(cfg))))

    lock, removed = None, {}
    claimed: tuple[str, str] | ResumePoint | None = None
    if rank == 0:
        try:
            lock, claimed, removed = _claim_run_dir(
                run_dir, cfg, vocabulary=vocabulary, resume_from=resume_from, new=new
            )
        except (RunLocked, ValueError) as exc:
            claimed = (type(exc).__name__, str(exc))
            if world == 1:
                raise
    claimed = broadcast_object(claimed)
    if isinstance(claimed, tuple):  # rank 0 refused: every rank says why and stops
        raise (RunLocked if claimed[0] == "RunLocked" else ValueError)(claimed[1])
    ctx = RunContext(
        cfg=cfg,
        run_dir=run_dir,
        point=claimed,
        removed=removed,
        train_loader=train_loader,
        val_loader=val_loader,
        vocabulary=vocabulary,
        class_weights=class_weights,
        device=device,
        precision=place.precision,
        signals=signals,
        dataset=dataset,
        rank=rank,
        world=world,
    )
    try:
        return _run_claimed(ctx)
    finally:
        if lock is not None:
            lock.release()


def _run_claimed(ctx: RunContext) -> RunResult:
    report = RunReport(ctx)
    report.starting(ctx)
    try:
        with run_log(ctx.run_dir / "train.log", enabled=ctx.rank == 0):  # every start and resume of the run, appended
            result = _train(ctx, report)
    except BaseException as exc:
        _keeping_the_error(report.failed, exc)
        raise
    report.ended(result.progress, finished=result.finished, stopped_by=result.stopped_by)
    return result


def _keeping_the_error(write: Callable[..., None], *args: Any) -> None:
    """After a run failed: ``write`` what is left to write (the record, the failed status), logging an
    ``OSError`` it meets (a disk still full) so that the run's own error stays the one reported."""
    try:
        write(*args)
    except OSError as exc:
        log.warning("after the run failed, could not write %s: %s", exc.filename, exc.strerror or exc)


def _train(ctx: RunContext, report: RunReport) -> RunResult:
    """Build, resume, record the start, then the session's epochs."""
    built = build(ctx)
    resumed = resume(ctx, built)
    if resumed is not None and ctx.point.own:
        report.resumed(ctx.point, resumed.state.get("metrics"), built.trainer.progress)
    record = _record_start(ctx, built)
    saver = CheckpointSaver(ctx, built.trainer, record.checkpoints)
    session = Session(ctx, built.trainer, record, saver, report)
    if resumed is not None and ctx.point.own:
        session.last_metrics = dict(resumed.state.get("metrics") or {})  # until the next evaluation
    if resumed is not None:
        restore_rng(resumed.rng)  # last thing before training: the same random draws as the uninterrupted run
    try:
        stopped_by = session.fit()
    except BaseException:
        _keeping_the_error(record.close)
        raise
    record.close()
    return RunResult(
        run_dir=ctx.run_dir,
        progress=built.trainer.progress,
        last_metrics=session.last_metrics,
        best_checkpoint=saver.best,
        last_checkpoint=saver.last,
        stopped_by=stopped_by,
        resumed_from=ctx.point.checkpoint,
    )


def _record_start(ctx: RunContext, built: Built) -> RunRecord:
    """Open the run's record (rank 0 writes it) and write what this start trains with into ``run.json``."""
    cfg, point, device, schedule = ctx.cfg, ctx.point, ctx.device, built.schedule
    record = RunRecord(
        ctx.run_dir,
        enabled=ctx.rank == 0,
        resume_step=point.step if point.own else None,
        best_metric=cfg.eval.best_metric,
    )
    n_params = sum(p.numel() for p in built.trainer.model.parameters())
    resumed = None
    if point.own:
        resumed = {"from": str(point.checkpoint), "epoch": point.epoch, "batch": point.batch, "step": point.step}
        record.log(
            "resume",
            step=point.step,
            epoch=point.epoch,
            batch=point.batch,
            checkpoint=str(point.checkpoint),
            removed=ctx.removed,
        )
    record.write_start(
        cfg.model_dump(mode="json"),
        seed=cfg.seed,
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        extra={
            "precision": ctx.precision.name,
            "world_size": ctx.world,
            "sync_bn": built.sync_bn,
            "parameters": n_params,
            "init": str(cfg.model.pretrained) if cfg.model.pretrained else "random",
            "vocabulary": ctx.vocabulary,
            "class_weights": ctx.class_weights,
            "batches_per_epoch": len(ctx.train_loader),
            "steps_per_epoch": built.steps_per_epoch,
            "warmup_steps": schedule.warmup_steps,
            "total_steps": schedule.total_steps,
            "dataset": ctx.dataset,
            "resume_from": str(point.checkpoint) if point.checkpoint is not None and not point.own else None,
        },
        resumed=resumed,
    )
    log.info(
        "training %s (%d parameters, %s init) on %s, %s; %d epochs x %d steps, warm-up %d; run dir %s",
        cfg.model.arch,
        n_params,
        built.init,
        device,
        ctx.precision.name,
        cfg.schedule.epochs,
        built.steps_per_epoch,
        schedule.warmup_steps,
        ctx.run_dir,
    )
    return record


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
    info: DatasetInfo = read_dataset_info(check_shards_folder(cfg.data.shards))  # read once, for both loaders
    created = init_distributed(cfg.compute.device)
    try:
        place = resolve_placement(cfg.compute.device, cfg.compute.amp)
        common = dict(
            device=str(place.device),
            seed=cfg.seed,
            rank=place.rank,
            world_size=place.world,
            amp=place.half_images,
            normalize={"mean": info.mean, "std": info.std},
        )
        train_loader = open_loader(
            cfg.data.shards / cfg.data.train_split, resolve_data_config(cfg.data, train=True), **common
        )
        val_loader = open_loader(
            cfg.data.shards / cfg.data.val_split, resolve_data_config(cfg.data, train=False), **common
        )
        vocabulary, class_weights = info.vocabulary, info.weights(cfg.loss.class_weights)
        if cfg.audit.threshold_samples:  # AUM threshold samples: the labels of 1/(K+1) become class K
            from pawpipe.train.data.threshold import with_threshold_samples

            train_loader, vocabulary, class_weights = with_threshold_samples(
                train_loader, vocabulary, class_weights, cfg.audit
            )
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
            placement=place,
        )
    finally:
        if created:
            dist.destroy_process_group()
