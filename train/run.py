"""``train run``: epochs of training with whole-set validation, best/last checkpoints and early stopping.

``run_training`` takes any two ``Loader``s (tests and the benchmark pass ``TensorLoader``s);
``train_from_config`` is what the CLI calls: it reads ``dataset.json`` and opens the real shard
loaders through ``train.data.open_loader``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ingest.progress import progress as progress_bar
from train.batch import Loader
from train.checkpoint import TrainProgress, load_checkpoint, restore_rng, rng_state, save_checkpoint
from train.config import TrainConfig
from train.data import DatasetInfo, open_loader, read_dataset_info
from train.device import rank_and_world, resolve_device, resolve_precision, seed_everything
from train.dynamics import DynamicsWriter, dynamics_path
from train.evaluate import evaluate
from train.loop import Trainer, UpdateInfo
from train.loss import ClassWeightedCE
from train.model import build_model
from train.optim import build_optimizer
from train.runrecord import RunRecord
from train.schedule import WarmupCosine, optimizer_steps_per_epoch

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    progress: TrainProgress
    last_metrics: dict[str, Any]
    best_checkpoint: Path
    last_checkpoint: Path
    stopped_by: str  # "epochs" | "early_stopping"


def _new_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run_name or time.strftime("%Y%m%d-%H%M%S")
    path = cfg.out_dir / name
    suffix = 1
    while path.exists() and any(path.iterdir()):
        path = cfg.out_dir / f"{name}-{suffix}"
        suffix += 1
    return path


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("count", "loss", "nll", "accuracy", "macro_f1", "macro_recall")}


def run_training(
    cfg: TrainConfig,
    *,
    train_loader: Loader,
    val_loader: Loader,
    vocabulary: list[str],
    class_weights: list[float] | None,
    run_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    dataset: dict[str, Any] | None = None,
) -> RunResult:
    """Train ``cfg.schedule.epochs`` epochs (or until early stopping); return where everything went."""
    seed_everything(cfg.seed, deterministic=cfg.compute.deterministic)
    device = resolve_device(cfg.compute.device)
    precision = resolve_precision(cfg.compute.amp, device)
    if device.type == "cpu" and cfg.compute.cpu_threads:
        torch.set_num_threads(cfg.compute.cpu_threads)
    rank, world = rank_and_world()
    run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(cfg)
    record = RunRecord(run_dir, enabled=rank == 0)

    model = build_model(
        len(vocabulary),
        arch=cfg.model.arch,
        drop_rate=cfg.model.drop_rate,
        drop_path_rate=cfg.model.drop_path_rate,
        pretrained=cfg.model.pretrained,
        freeze_bn=cfg.model.freeze_bn,
    )
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
        progress=TrainProgress(best_metric=cfg.eval.best_metric),
    )
    if resume_from is not None:
        # Epoch-boundary resume from a checkpoint of this layout; mid-epoch resume, signals and
        # timed checkpoints are the training daemon's job.
        state = load_checkpoint(resume_from, map_location="cpu")  # RNG states must stay CPU tensors
        trainer.load_state_dict(state)
        train_loader.load_state_dict(state["loader"])
        restore_rng(state["rng"])
        log.info("resumed from %s at epoch %d, step %d", resume_from, trainer.progress.epoch, trainer.progress.step)

    n_params = sum(p.numel() for p in model.parameters())
    record.write_start(
        cfg.model_dump(mode="json"),
        seed=cfg.seed,
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        extra={
            "precision": precision.name,
            "world_size": world,
            "parameters": n_params,
            "init": str(cfg.model.pretrained) if cfg.model.pretrained else "random",
            "vocabulary": vocabulary,
            "class_weights": class_weights,
            "batches_per_epoch": len(train_loader),
            "steps_per_epoch": steps_per_epoch,
            "warmup_steps": schedule.warmup_steps,
            "total_steps": schedule.total_steps,
            "dataset": dataset,
        },
    )
    log.info(
        "training %s (%d parameters, %s init) on %s, %s; %d epochs x %d steps, warm-up %d; run dir %s",
        cfg.model.arch, n_params, "pretrained" if cfg.model.pretrained else "random", device, precision.name,
        cfg.schedule.epochs, steps_per_epoch, schedule.warmup_steps, run_dir,
    )
    session = _Session(cfg, trainer, record, train_loader, val_loader, vocabulary, precision, device)
    try:
        stopped_by = session.fit()
    finally:
        record.close()
    return RunResult(
        run_dir=run_dir,
        progress=trainer.progress,
        last_metrics=session.last_metrics,
        best_checkpoint=record.checkpoints / "best.pt",
        last_checkpoint=record.checkpoints / "last.pt",
        stopped_by=stopped_by,
    )


def early_stopping_update(progress: TrainProgress, value: float, *, patience: int) -> bool:
    """Keras-style: after each epoch, True once the monitored validation loss has not improved
    (strictly decreased) for ``patience`` epochs in a row; ``patience`` 0 never stops."""
    if math.isfinite(value) and value < progress.monitor_best:
        progress.monitor_best, progress.bad_epochs = value, 0
    else:
        progress.bad_epochs += 1
    return patience > 0 and progress.bad_epochs >= patience


class _Session:
    """The epoch loop and what happens around each update and evaluation."""

    def __init__(self, cfg, trainer, record, train_loader, val_loader, vocabulary, precision, device) -> None:
        self.cfg: TrainConfig = cfg
        self.trainer: Trainer = trainer
        self.record: RunRecord = record
        self.train_loader, self.val_loader = train_loader, val_loader
        self.vocabulary = vocabulary
        self.precision, self.device = precision, device
        self.last_metrics: dict[str, Any] = {}
        self.rank, self.world = rank_and_world()

    @property
    def progress(self) -> TrainProgress:
        return self.trainer.progress

    def fit(self) -> str:
        cfg = self.cfg
        while self.progress.epoch < cfg.schedule.epochs:
            epoch = self.progress.epoch
            self.train_loader.set_epoch(epoch)
            self._train_one_epoch(epoch)
            self.progress.epoch = epoch + 1
            metrics = self._evaluate(end_of_epoch=True)
            stop = self._early_stop(metrics)
            self._save("last.pt", metrics)
            if stop:
                log.info(
                    "early stopping after epoch %d: validation %s has not improved for %d epochs (best %.4f)",
                    epoch + 1, cfg.eval.monitor, self.progress.bad_epochs, self.progress.monitor_best,
                )
                return "early_stopping"
        return "epochs"

    def _train_one_epoch(self, epoch: int) -> None:
        cfg, loader = self.cfg, self.train_loader
        batches = len(loader)
        writer = None
        if cfg.record.dynamics:
            path = dynamics_path(self.record.dynamics, epoch, rank=self.rank, world_size=self.world)
            writer = DynamicsWriter(path, epoch=epoch, rows_per_group=cfg.record.dynamics_rows_per_group)
        bar = progress_bar(
            batches * loader.batch_size, desc=f"epoch {epoch + 1}/{cfg.schedule.epochs}", unit="img",
            disable=not cfg.record.progress or self.rank != 0,
        )
        bar.update(self.progress.batch_in_epoch * loader.batch_size)
        started, start_batch = time.perf_counter(), self.progress.batch_in_epoch
        done = [start_batch]
        self.trainer.reset_running()  # the previous epoch's evaluation and checkpoint are not training time

        def on_update(info: UpdateInfo) -> None:
            bar.update((info.batch_in_epoch - done[0]) * loader.batch_size)
            done[0] = info.batch_in_epoch
            last = info.batch_in_epoch == info.batches_per_epoch
            if info.step % cfg.record.log_every_steps == 0 or last:
                per_batch = (time.perf_counter() - started) / max(info.batch_in_epoch - start_batch, 1)
                self.record.log(
                    "train", step=info.step, epoch=epoch, batch=info.batch_in_epoch, lr=info.lr,
                    **self.trainer.take_running(), nonfinite_total=self.progress.nonfinite_total,
                    eta_s=round(per_batch * (info.batches_per_epoch - info.batch_in_epoch), 1),
                )
            if cfg.eval.every_steps and info.step % cfg.eval.every_steps == 0 and not last:
                paused = time.perf_counter()
                self._evaluate(end_of_epoch=False)
                self.trainer.exclude_time(time.perf_counter() - paused)

        try:
            self.trainer.train_epoch(loader, dynamics=writer, on_update=on_update)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            bar.close()
        if writer is not None:
            writer.close()

    def _evaluate(self, *, end_of_epoch: bool) -> dict[str, Any]:
        cfg = self.cfg
        started = time.perf_counter()
        metrics = evaluate(
            self.trainer.eval_model(),
            self.val_loader,
            loss_fn=self.trainer.loss_fn,
            vocabulary=self.vocabulary,
            device=self.device,
            precision=self.precision,
            channels_last=cfg.compute.channels_last,
        )
        self.last_metrics = metrics
        p = self.progress
        self.record.log(
            "eval", step=p.step, epoch=p.epoch if end_of_epoch else p.epoch + p.batch_in_epoch / max(len(self.train_loader), 1),
            end_of_epoch=end_of_epoch, weights="ema" if self.trainer.ema is not None else "model",
            seconds=round(time.perf_counter() - started, 2), **metrics,
        )
        p.history.append({"step": p.step, "epoch": p.epoch, **_summary(metrics)})
        value = metrics[cfg.eval.best_metric]
        if math.isfinite(value) and value > p.best_value:
            p.best_value, p.best_epoch, p.best_step = value, p.epoch, p.step
            self._save("best.pt", metrics)
            log.info("new best validation %s %.4f at step %d", cfg.eval.best_metric, value, p.step)
        log.info(
            "eval at step %d: loss %.4f, accuracy %.4f, macro-F1 %.4f over %d samples",
            p.step, metrics["loss"], metrics["accuracy"], metrics["macro_f1"], metrics["count"],
        )
        self.record.write_curves()
        return metrics

    def _early_stop(self, metrics: dict[str, Any]) -> bool:
        return early_stopping_update(self.progress, metrics[self.cfg.eval.monitor], patience=self.cfg.eval.patience)

    def _save(self, name: str, metrics: dict[str, Any]) -> None:
        state = {
            **self.trainer.state_dict(),
            "config": self.cfg.model_dump(mode="json"),
            "vocabulary": self.vocabulary,
            "loader": self.train_loader.state_dict(),
            "rng": rng_state(),
            "metrics": _summary(metrics),
        }
        if self.rank == 0:
            save_checkpoint(self.record.checkpoints / name, state)


def train_from_config(cfg: TrainConfig, *, resume_from: str | Path | None = None) -> RunResult:
    """``train run``: read ``SHARDS/dataset.json``, open the train/val loaders, train."""
    if cfg.data.shards is None:
        raise ValueError("data.shards: expected the shards folder (with dataset.json), got nothing")
    info: DatasetInfo = read_dataset_info(cfg.data.shards)
    device = resolve_device(cfg.compute.device)
    rank, world = rank_and_world()
    common = dict(image_size=cfg.data.image_size, device=str(device), seed=cfg.seed, backend=cfg.data.loader,
                  workers=cfg.data.workers, rank=rank, world_size=world)
    train_loader = open_loader(cfg.data.shards / cfg.data.train_split, train=True, batch_size=cfg.data.batch_size, **common)
    val_loader = open_loader(
        cfg.data.shards / cfg.data.val_split, train=False, batch_size=cfg.data.eval_batch_size or cfg.data.batch_size, **common
    )
    return run_training(
        cfg,
        train_loader=train_loader,
        val_loader=val_loader,
        vocabulary=info.vocabulary,
        class_weights=info.weights(cfg.loss.class_weights),
        resume_from=resume_from,
        dataset={"path": str(cfg.data.shards), **info.model_dump(exclude={"vocabulary"})},
    )
