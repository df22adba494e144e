"""Learning rate per optimizer step: linear warm-up to the peak, then cosine decay to ``min_lr``.

``lr_at(step)`` is a pure function of the global optimizer step (0-based: the rate used by the
``step+1``-th update), so resuming only needs the step count and ``train plan`` can print the
curve without building anything:

* ``step < W``: ``lr * (step + 1) / W``  (the first update already moves; step ``W-1`` is the peak);
* ``W <= step < T``: ``min_lr + (lr - min_lr) * (1 + cos(pi * (step - W + 1) / (T - W))) / 2``
  (step ``T-1`` is exactly ``min_lr``);
* ``step >= T``: ``min_lr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WarmupCosine:
    lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"schedule: expected total_steps >= 1, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"schedule: expected 0 <= warmup_steps <= total_steps ({self.total_steps}), got {self.warmup_steps}"
            )
        if self.min_lr > self.lr:
            raise ValueError(f"schedule: min_lr {self.min_lr} is above the peak lr {self.lr}")

    def lr_at(self, step: int) -> float:
        w, t = self.warmup_steps, self.total_steps
        if step < 0:
            raise ValueError(f"schedule: step must be >= 0, got {step}")
        if step < w:
            return self.lr * (step + 1) / w
        if step >= t:
            return self.min_lr
        progress = (step - w + 1) / (t - w)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every param group's lr for ``step`` (groups may carry an ``lr_scale``); return the base rate."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def curve(self, points: int = 200) -> list[tuple[int, float]]:
        """(step, lr) at up to ``points`` evenly spaced steps, always including both warm-up ends and the last step."""
        marks = {0, max(self.warmup_steps - 1, 0), self.warmup_steps, self.total_steps - 1}
        marks.update(round(i * (self.total_steps - 1) / max(points - 1, 1)) for i in range(points))
        return [(s, self.lr_at(s)) for s in sorted(m for m in marks if 0 <= m < self.total_steps)]


def optimizer_steps_per_epoch(batches_per_epoch: int, accumulate: int) -> int:
    """Optimizer updates per epoch: a trailing group smaller than ``accumulate`` still makes one."""
    return max(1, math.ceil(batches_per_epoch / accumulate))
