"""How fast a run trains and how long it has left: measured once per update, then shown everywhere
(``metrics.jsonl``, ``status.json``, the progress bar and the plain progress line)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pawpipe.train.fit.checkpoint import TrainProgress


@dataclass(frozen=True)
class Eta:
    """Seconds of training left in this epoch and in the whole run, at the current rate (evaluations
    excluded; early stopping may end the run sooner); None before a rate is known."""

    epoch_s: float | None
    run_s: float | None


class Pace:
    """Images per second over the last ``every_s`` (at least 1 s; all ranks together), and the ETAs it gives."""

    def __init__(
        self, *, batches: int, batch_size: int, world: int, epochs: int, every_s: float, samples_seen: int
    ) -> None:
        self.batches, self.batch_size, self.world, self.epochs = batches, batch_size, world, epochs
        self.every_s = max(every_s, 1.0)
        self.rate = 0.0
        self._mark = (time.monotonic(), samples_seen)

    def restart(self, samples_seen: int) -> None:
        """Measure from here (an epoch's start: the evaluation and checkpoint before it are not training time)."""
        self._mark = (time.monotonic(), samples_seen)

    def measure(self, progress: TrainProgress) -> Eta:
        """Update the rate when the interval is over (or none is known yet), and the ETAs at that rate."""
        now = time.monotonic()
        mark_time, mark_samples = self._mark
        if now > mark_time and (now - mark_time >= self.every_s or not self.rate):
            self.rate = (
                (progress.samples_seen - mark_samples) * self.world / (now - mark_time)
            )  # over the last interval
            if now - mark_time >= self.every_s:
                self._mark = (now, progress.samples_seen)
        if self.rate <= 0:
            return Eta(None, None)
        per_batch = self.batch_size * self.world / self.rate
        left_in_epoch = max(self.batches - progress.batch_in_epoch, 0)
        later = max(self.epochs - progress.epoch - 1, 0) * self.batches
        return Eta(round(left_in_epoch * per_batch, 1), round((left_in_epoch + later) * per_batch, 1))


def format_seconds(value: float | None) -> str:
    """``1h02m`` / ``3m07s``; ``?`` when unknown."""
    if value is None:
        return "?"
    hours, rest = divmod(int(round(value)), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
