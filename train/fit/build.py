"""The two steps before a run trains, each from its ``RunContext``: ``build`` makes the model, the
learning-rate schedule and the ``Trainer`` from the config; ``resume`` loads the checkpoint the
context points at into them (weights, optimizer, progress, the loader's position, the random
streams to restore last)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from pawpipe.train.fit.checkpoint import TrainProgress, load_checkpoint, rank_state
from pawpipe.train.fit.context import RunContext
from pawpipe.train.fit.device import resolve_sync_bn
from pawpipe.train.fit.loss import ClassWeightedCE
from pawpipe.train.fit.model import build_model, place_model
from pawpipe.train.fit.optim import build_optimizer
from pawpipe.train.fit.schedule import WarmupCosine, optimizer_steps_per_epoch
from pawpipe.train.fit.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Built:
    """What ``build`` made: the trainer (with its model), the schedule, and the facts the record keeps."""

    trainer: Trainer
    schedule: WarmupCosine
    steps_per_epoch: int
    sync_bn: bool
    init: str  # "checkpoint", "pretrained" or "random": where the weights come from


@dataclass(frozen=True)
class Resumed:
    """What ``resume`` loaded: the checkpoint's contents (its metrics, for the report) and this rank's
    random streams, restored by the caller as the last thing before training."""

    state: dict[str, Any]
    rng: Any


def build(ctx: RunContext) -> Built:
    cfg = ctx.cfg
    model = build_model(
        len(ctx.vocabulary),
        arch=cfg.model.arch,
        drop_rate=cfg.model.drop_rate,
        drop_path_rate=cfg.model.drop_path_rate,
        pretrained=cfg.model.pretrained,
        freeze_bn=cfg.model.freeze_bn,
    )
    if ctx.point.checkpoint is None and not cfg.model.pretrained:
        log.info("random initialisation (no pretrained weights given)")
    init = "checkpoint" if ctx.point.checkpoint is not None else "pretrained" if cfg.model.pretrained else "random"
    model = place_model(model, ctx.device, channels_last=cfg.compute.channels_last)  # before the optimizer sees it
    sync_bn = resolve_sync_bn(
        cfg.compute.sync_bn, device=ctx.device, world_size=ctx.world, batch_size=cfg.data.batch_size
    )
    steps_per_epoch = optimizer_steps_per_epoch(len(ctx.train_loader), cfg.optim.accumulate)
    schedule = WarmupCosine(
        lr=cfg.optim.lr,
        min_lr=cfg.schedule.min_lr,
        warmup_steps=min(cfg.schedule.warmup_for(steps_per_epoch), cfg.schedule.epochs * steps_per_epoch),
        total_steps=cfg.schedule.epochs * steps_per_epoch,
    )
    trainer = Trainer(
        model,
        optimizer=build_optimizer(model, cfg.optim),
        loss_fn=ClassWeightedCE(ctx.class_weights, label_smoothing=cfg.loss.label_smoothing),
        schedule=schedule,
        precision=ctx.precision,
        device=ctx.device,
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
    return Built(trainer=trainer, schedule=schedule, steps_per_epoch=steps_per_epoch, sync_bn=sync_bn, init=init)


def resume(ctx: RunContext, built: Built) -> Resumed | None:
    """Load ``ctx.point``'s checkpoint into ``built`` and the training loader; None when the run starts
    fresh. A run's own checkpoint must have been trained on the same learning-rate schedule."""
    point = ctx.point
    if point.checkpoint is None:
        return None
    state = load_checkpoint(point.checkpoint, map_location="cpu")  # RNG states must stay CPU tensors
    built.trainer.load_state_dict(state)
    own = rank_state(state, ctx.rank, ctx.world)  # this rank's data position and random streams
    ctx.train_loader.load_state_dict(own["loader"])
    if point.own and state.get("schedule") not in (None, asdict(built.schedule)):
        raise ValueError(
            f"{point.checkpoint}: learning-rate schedule {state['schedule']} differs from this run's "
            f"{asdict(built.schedule)} (did the number of training samples change?); start over with --new"
        )
    p = built.trainer.progress
    log.info(
        "resuming from %s: epoch %d, batch %d of %d, step %d%s",
        point.checkpoint,
        p.epoch + 1,
        p.batch_in_epoch,
        len(ctx.train_loader),
        p.step,
        "" if point.own else " (another run's checkpoint; this run's config)",
    )
    if any(ctx.removed.values()):
        log.info("removed what the interrupted process wrote after that checkpoint: %s", ctx.removed)
    return Resumed(state=state, rng=own["rng"])
