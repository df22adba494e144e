"""``RUN_DIR/status.json``: what a run is doing, rewritten atomically every few seconds. Its fields
and states are the contract ``common.contracts.status_file``.

``train status RUN_DIR`` prints it for people (``--json`` as is). A killed run cannot say so
itself: when the status says a run is active but nobody holds the run's lock (or, without a
lock file, its pid is gone), the state read back is ``died`` (``state_written`` keeps the last
one written).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pawpipe.common.contracts.status_file import (
    ACTIVE_STATES,
    STATES,
    STATUS_FILE,
    check_fields,
    read_status_file,
    write_status_file,
)


class StatusWriter:
    def __init__(self, run_dir: str | Path, *, every_s: float = 5.0) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self.every_s = every_s
        self._doc: dict[str, Any] = {"pid": os.getpid()}
        self._written = 0.0

    def update(self, *, force: bool = False, **fields: Any) -> None:
        """Merge ``fields``; write when forced, when the state changes, or every ``every_s`` seconds.

        Fields are those of ``RunStatus``; their values are checked against it when written.
        """
        check_fields(fields)
        state = fields.get("state")
        if state is not None and state not in STATES:
            raise ValueError(f"status: expected a state in {STATES}, got {state!r}")
        changed = state is not None and state != self._doc.get("state")
        self._doc.update(fields)
        now = time.monotonic()
        if force or changed or now - self._written >= self.every_s:
            self._doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            write_status_file(self.path, self._doc)
            self._written = now


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """The run's status document, checked against its contract; an active state whose process is gone reads ``died``."""
    path = Path(run_dir) / STATUS_FILE
    try:
        doc = read_status_file(path)
    except FileNotFoundError:
        from pawpipe.common.folders import describe, what_is

        found = what_is(run_dir)
        what = (
            f"this is {describe(found)}, not a run directory"
            if found not in (None, "", "train run")
            else ("not a run directory, or the run never started")
        )
        raise ValueError(f"{run_dir}: no {STATUS_FILE} ({what})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if doc.get("state") in ACTIVE_STATES and not _running(Path(run_dir), doc.get("pid")):
        doc["state_written"], doc["state"] = doc["state"], "died"
        doc["state_note"] = (
            f"process {doc.get('pid')} is gone (killed?); rerun the same command to resume from the last checkpoint"
        )
    return doc


def _running(run_dir: Path, pid: object) -> bool:
    """Whether the run's trainer lives: the kernel's lock says so exactly (a reused pid does not fool it)."""
    from pawpipe.train.rundir.lock import LOCK_FILE, RunLock

    if (run_dir / LOCK_FILE).exists():
        return RunLock(run_dir).holder() is not None
    return _alive(pid)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def format_status(doc: dict[str, Any]) -> str:
    """A few lines a person reads at a glance."""
    eta = doc.get("epoch_eta_s")
    epoch = doc.get("epoch")
    if doc.get("state") == "finished":
        where = f"{epoch} of {doc.get('epochs', '?')} epochs done"
    else:
        where = f"epoch {epoch + 1 if isinstance(epoch, int) else '?'}/{doc.get('epochs', '?')}"
        if doc.get("batches"):
            where += f"  batch {doc.get('batch')}/{doc['batches']}"
    lines = [
        f"state      {doc.get('state')}"
        + (f"  ({doc['state_note']})" if doc.get("state_note") else "")
        + (
            f"  by {doc['stopped_by']}" if doc.get("stopped_by") and doc.get("state") in ("stopped", "finished") else ""
        ),
        f"progress   {where}  step {doc.get('step')}  pid {doc.get('pid')}",
        f"speed      {doc.get('images_per_s') or 0:.1f} img/s   epoch ETA {_duration(eta) if eta is not None else '?'}",
    ]
    if doc.get("error"):
        lines.append(f"error      {doc['error']}")
    if doc.get("last_metrics"):
        m = doc["last_metrics"]
        lines.append(
            "last eval  "
            + "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in m.items()
                if isinstance(v, (int, float))
            )
        )
    best = doc.get("best")
    if isinstance(best, dict) and best.get("value") is not None:
        lines.append(
            f"best       {best.get('metric')} {best['value']:.4f} at step {best.get('step')} (epoch "
            f"{best.get('epoch')})"
        )
    elif best:
        lines.append("best       " + "  ".join(f"{k} {v}" for k, v in best.items()))
    checkpoint = doc.get("last_checkpoint")
    if isinstance(checkpoint, dict):
        checkpoint = f"{checkpoint.get('path')} at step {checkpoint.get('step')}" + (
            f", {checkpoint['time']}" if checkpoint.get("time") else ""
        )
    lines.append(f"checkpoint {checkpoint or 'none yet'}")
    lines.append(f"updated    {doc.get('updated')}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"
