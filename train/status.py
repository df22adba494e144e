"""``RUN_DIR/status.json``: what a run is doing, rewritten atomically every few seconds.

    {"state": "training", "pid": 4242, "epoch": 3, "step": 18000, "images_per_s": 612.0,
     "epoch_eta_s": 5400, "last_metrics": {...}, "best": {...}, "last_checkpoint": "...", "updated": "..."}

``train status RUN_DIR`` prints it for people (``--json`` as is); a status older than its
writer's pid (the process is gone) is shown as such, since a killed run cannot say so itself.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ingest.atomic import write_json

STATUS_FILE = "status.json"
STATES = ("starting", "training", "evaluating", "stopped", "failed", "finished")


class StatusWriter:
    def __init__(self, run_dir: str | Path, *, every_s: float = 5.0) -> None:
        self.path = Path(run_dir) / STATUS_FILE
        self.every_s = every_s
        self._doc: dict[str, Any] = {"pid": os.getpid()}
        self._written = 0.0

    def update(self, *, force: bool = False, **fields: Any) -> None:
        """Merge ``fields``; write when forced, when the state changes, or every ``every_s`` seconds."""
        state = fields.get("state")
        if state is not None and state not in STATES:
            raise ValueError(f"status: expected a state in {STATES}, got {state!r}")
        changed = state is not None and state != self._doc.get("state")
        self._doc.update(fields)
        now = time.monotonic()
        if force or changed or now - self._written >= self.every_s:
            self._doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            write_json(self.path, self._doc)
            self._written = now


def read_status(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / STATUS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{run_dir}: no {STATUS_FILE} (not a run directory, or the run never started)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    if doc.get("state") in ("starting", "training", "evaluating") and not _alive(doc.get("pid")):
        doc["state_note"] = f"process {doc.get('pid')} is gone (killed?); the run resumes from its last checkpoint"
    return doc


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
    lines = [
        f"state      {doc.get('state')}" + (f"  ({doc['state_note']})" if doc.get("state_note") else ""),
        f"epoch      {doc.get('epoch')}   step {doc.get('step')}   pid {doc.get('pid')}",
        f"speed      {doc.get('images_per_s') or 0:.1f} img/s   epoch ETA {_duration(eta) if eta is not None else '?'}",
    ]
    if doc.get("last_metrics"):
        m = doc["last_metrics"]
        lines.append("last eval  " + "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, (int, float))))
    if doc.get("best"):
        lines.append("best       " + "  ".join(f"{k} {v}" for k, v in doc["best"].items()))
    lines.append(f"checkpoint {doc.get('last_checkpoint') or 'none yet'}")
    lines.append(f"updated    {doc.get('updated')}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"
