"""The training step: mixed precision, accumulation, clipping, EMA, and a guard against non-finite losses.

One optimizer update = ``accumulate`` micro-batches (a trailing shorter group at the end of an
epoch still makes one update, scaled by its own size). Per update the loop synchronises with the
device once, to decide whether the update is finite; everything else (running loss, accuracy,
per-sample dynamics) stays on the device until it is logged or flushed.

Non-finite policy: an update whose loss (or, without a grad scaler, whose gradient norm) is not
finite is skipped (no optimizer step, no EMA update), counted in ``progress.nonfinite_total`` and
logged with the sample ids involved; ``max_nonfinite_in_a_row`` consecutive skips stop the run
with ``NonFiniteLossError``. Skipped updates still advance ``progress.step`` so that the schedule
and the epoch/step bookkeeping stay aligned. With fp16 the grad scaler's own overflow skips (inf
gradients at a too-high scale) are normal and are not counted.

On N ranks (DDP) an update is the one a single process makes on the global batch: the loss is
normalised by the global weight total (``ClassWeightedCE(global_batch=True)``), BatchNorm can be
synchronised (``sync_bn``: converted before wrapping), the finite/skip decision is taken once
for all ranks (one all-reduce, so no rank steps or raises while another waits in a collective),
and a change of the frozen groups re-wraps the model, because DDP only reduces the parameters
that required gradients when it was wrapped.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pawpipe.train.data.batch import Batch, Loader
from pawpipe.train.fit.checkpoint import TrainProgress
from pawpipe.train.fit.device import Precision, any_rank, rank_and_world
from pawpipe.train.fit.dynamics import DynamicsWriter, EpochDynamics
from pawpipe.train.fit.loss import ClassWeightedCE, plain_ce_and_margin
from pawpipe.train.fit.model import PawNet, place_model
from pawpipe.train.fit.schedule import WarmupCosine

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Too many consecutive updates had a non-finite loss or gradient; the run stops rather than train on NaN."""


@dataclass
class UpdateInfo:
    """What the loop reports after each optimizer update (values synchronised only at log time)."""

    epoch: int
    step: int  # global optimizer steps done, after this update
    batch_in_epoch: int
    batches_per_epoch: int
    lr: float
    skipped: bool


class Trainer:
    def __init__(
        self,
        model: PawNet,
        *,
        optimizer: torch.optim.Optimizer,
        loss_fn: ClassWeightedCE,
        schedule: WarmupCosine,
        precision: Precision,
        device: torch.device,
        accumulate: int = 1,
        clip_grad_norm: float = 0.0,
        channels_last: bool = True,
        compile: bool = False,
        ema_decay: float = 0.0,
        max_nonfinite_in_a_row: int = 20,
        freeze_groups: int = 0,
        freeze_steps: int = 0,
        sync_bn: bool = False,
        progress: TrainProgress | None = None,
    ) -> None:
        self.device = device
        self.channels_last = channels_last
        _, world = rank_and_world()
        if sync_bn and world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(
                model
            )  # the same Parameter objects: the optimizer keeps them
        self.model = place_model(model, device, channels_last=channels_last)
        self.loss_fn = loss_fn.to(device)
        self.optimizer = optimizer
        self.schedule = schedule
        self.precision = precision
        self.accumulate = accumulate
        self.clip_grad_norm = clip_grad_norm
        self.max_nonfinite_in_a_row = max_nonfinite_in_a_row
        self.freeze_groups, self.freeze_steps = freeze_groups, freeze_steps
        self.progress = progress or TrainProgress()
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.scaler)
        self.ema = None
        if ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=ema_decay)
        self._compiled: nn.Module = torch.compile(self.model) if compile else self.model
        self.forward_model = self._wrap()
        self._reset_running()

    def _wrap(self) -> nn.Module:
        """The module the training step calls: the (compiled) model, in DDP on several ranks.

        DDP reduces the parameters that require gradients when it is built; after the frozen groups
        change it is built anew (on every rank at the same step, a pure function of the step).
        """
        if rank_and_world()[1] == 1:
            return self._compiled
        self.forward_model = None  # the old wrapper's reducer and its gradient hooks go first
        gc.collect()
        device = self.device
        index = (
            (device.index if device.index is not None else torch.cuda.current_device())
            if device.type == "cuda"
            else None
        )
        return DistributedDataParallel(self._compiled, device_ids=[index] if index is not None else None)

    # -- running statistics, kept on the device between log points ---------------------------------
    def reset_running(self) -> None:
        """Start a new throughput/loss interval (e.g. at the start of an epoch, after evaluation)."""
        self._reset_running()

    def exclude_time(self, seconds: float) -> None:
        """Leave ``seconds`` (spent evaluating, checkpointing) out of the current throughput interval."""
        self._run_started += seconds

    def _reset_running(self) -> None:
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        self._run_loss, self._run_correct, self._run_count, self._run_updates = zero.clone(), zero.clone(), 0, 0
        self._run_started = time.perf_counter()

    def take_running(self) -> dict[str, float]:
        """Mean training loss and accuracy since the last call, and the throughput (synchronises once).

        On several ranks the sums are all-reduced (every rank must call this at the same steps), so
        the numbers cover the whole global batch and ``img_per_s`` is the total over ranks.
        """
        elapsed = max(time.perf_counter() - self._run_started, 1e-9)
        totals = torch.stack(
            [
                self._run_loss,
                self._run_correct,
                torch.full_like(self._run_loss, self._run_count),
                torch.full_like(self._run_loss, self._run_updates),
            ]
        )
        if rank_and_world()[1] > 1:
            torch.distributed.all_reduce(totals)
        loss, correct, count, updates = (float(v) for v in totals.cpu())
        count, updates = int(count), int(updates)
        self._reset_running()
        return {
            "train_loss": loss / max(updates, 1),
            "train_accuracy": correct / max(count, 1),
            "img_per_s": count / elapsed,
            "samples": count,
        }

    # -- the epoch ------------------------------------------------------------------------------------
    def _apply_freeze(self) -> None:
        frozen = self.freeze_groups if self.progress.step < self.freeze_steps else 0
        if frozen != self.model._frozen_groups:
            self.model.set_frozen_groups(frozen)
            self.forward_model = self._wrap()
            log.info("step %d: %d leading backbone groups frozen", self.progress.step, frozen)

    def train_epoch(
        self,
        loader: Loader,
        *,
        dynamics: DynamicsWriter | EpochDynamics | None = None,
        on_update: Callable[[UpdateInfo], bool | None] | None = None,
    ) -> bool:
        """Train over one epoch of ``loader`` (from ``progress.batch_in_epoch`` when resuming).

        ``on_update`` runs after every optimizer update; when it returns True the epoch stops there
        (``progress.batch_in_epoch`` stays at the next batch to train) and this returns False.
        Returns True when the epoch is complete (``batch_in_epoch`` back to 0).
        """
        progress = self.progress
        batches = len(loader)
        self._apply_freeze()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        group_loss = torch.zeros((), device=self.device)
        group_ids: list[str] = []
        for index, batch in enumerate(loader, start=progress.batch_in_epoch):
            group_start = index - index % self.accumulate
            group_size = min(self.accumulate, batches - group_start)
            last_in_group = index - group_start == group_size - 1
            loss = self._forward_backward(batch, group_size=group_size, sync=last_in_group, dynamics=dynamics)
            group_loss += loss.detach()
            group_ids.extend(batch.sample_ids)
            progress.batch_in_epoch = index + 1
            progress.samples_seen += len(batch.sample_ids)
            if last_in_group:
                lr, skipped = self._update(group_loss, group_ids)
                group_loss = torch.zeros((), device=self.device)
                group_ids = []
                self._apply_freeze()
                if on_update is not None and on_update(
                    UpdateInfo(progress.epoch, progress.step, index + 1, batches, lr, skipped)
                ):
                    return False
        progress.batch_in_epoch = 0
        return True

    def _forward_backward(
        self, batch: Batch, *, group_size: int, sync: bool, dynamics: DynamicsWriter | EpochDynamics | None
    ) -> torch.Tensor:
        images = batch.images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(self.device, torch.int64, non_blocking=True)
        no_sync = getattr(self.forward_model, "no_sync", None)
        context = no_sync() if no_sync is not None and not sync else contextlib.nullcontext()
        with context:
            with self.precision.autocast(self.device):
                logits = self.forward_model(images)
            loss, _ = self.loss_fn(logits, labels, global_batch=True)
            # Backward even when the loss is not finite: the update decides once per group (one sync),
            # and on several ranks every rank must join the gradient all-reduce.
            self.scaler.scale(loss / group_size).backward()
        with torch.no_grad():
            preds = logits.argmax(dim=1)
            self._run_correct += (preds == labels).sum()
            self._run_count += labels.numel()
            if dynamics is not None:
                nll, margin = plain_ce_and_margin(logits, labels)
                dynamics.add(
                    batch.sample_ids,
                    step=self.progress.step,
                    labels=labels,
                    preds=preds,
                    loss=nll,
                    margin=margin,
                    probs=logits.float().softmax(dim=1),
                    progress=self.progress,
                )
        return loss / group_size

    def _update(self, group_loss: torch.Tensor, group_ids: list[str]) -> tuple[float, bool]:
        progress = self.progress
        lr = self.schedule.apply(self.optimizer, progress.step)
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.clip_grad_norm if self.clip_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros((), device=self.device)
        finite = torch.isfinite(group_loss)
        if not self.scaler.is_enabled():
            finite = finite & torch.isfinite(grad_norm)
        ok = not any_rank([not bool(finite.item())], device=self.device)[0]  # one decision for every rank
        if ok:
            self.scaler.step(self.optimizer)
            if self.ema is not None:
                self.ema.update(self.model, step=progress.step)
            progress.nonfinite_in_a_row = 0
            self._run_loss += group_loss.double()
            self._run_updates += 1
        else:
            progress.nonfinite_total += 1
            progress.nonfinite_in_a_row += 1
            log.warning(
                "epoch %d step %d: non-finite loss %s / grad norm %s, update skipped (%d in a row); samples %s",
                progress.epoch,
                progress.step,
                float(group_loss),
                float(grad_norm),
                progress.nonfinite_in_a_row,
                group_ids[:8] + (["..."] if len(group_ids) > 8 else []),
            )
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        if progress.nonfinite_in_a_row >= self.max_nonfinite_in_a_row:
            raise NonFiniteLossError(
                f"training stopped at epoch {progress.epoch}, step {progress.step}: "
                f"{progress.nonfinite_in_a_row} consecutive updates had a non-finite loss or gradient "
                f"(limit record.max_nonfinite_in_a_row={self.max_nonfinite_in_a_row}; lr {lr:.3g}, "
                f"precision {self.precision.name}). Expected finite losses: check the input normalisation "
                f"(divide by 255 once), lower optim.lr, or try compute.amp=bf16/off."
            )
        return lr, not ok

    # -- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "progress": self.progress.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.progress = TrainProgress.from_state_dict(state["progress"])

    def eval_model(self) -> nn.Module:
        """The weights validation should see: the EMA copy when enabled, else the live model."""
        return self.ema.module if self.ema is not None else self.model
