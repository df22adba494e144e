"""``RUN_DIR/status.json``: what a training run is doing, written by the run (``train.rundir.status.StatusWriter``)
every few seconds, read by ``train status`` and the queue daemon.

    {"pid": 4242, "state": "training", "run_dir": "...", "started": "...", "epochs": 30, "world_size": 1,
     "error": null, "epoch": 3, "batch": 9000, "batches": 31250, "step": 102750, "images_per_s": 612.0,
     "epoch_eta_s": 2330.0, "run_eta_s": 70000.0, "lr": 2.1e-4, "last_metrics": {"loss": ..., "accuracy": ...},
     "best": {"metric", "value", "epoch", "step"}, "last_checkpoint": {"path", "time", "epoch", "batch", "step"},
     "stopped_by": "epochs", "updated": "2025-01-31T12:00:00+0900"}

Fields appear in the order the run first sets them, and each only once the run has set it. A
writer sets only ``RunStatus``'s fields; readers let fields they do not know pass (a file from
another version) and check those they do.
``epoch`` is 0-based: the epoch in progress (``batch`` of ``batches`` done), or, once the run has
finished, the number of epochs done. States: starting, training, evaluating, and at the end
stopped (a signal; resumable), failed (``error`` says why) or finished.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pawpipe.common.atomic import write_json
from pawpipe.common.contracts.json_file import read_json, validate

STATUS_FILE = "status.json"
STATES = ("starting", "training", "evaluating", "stopped", "failed", "finished")
ACTIVE_STATES = STATES[:3]  # a run in one of these holds its run directory's lock


class BestEval(BaseModel):
    """``best``: the best validation value so far and where it was reached."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = None
    value: float | None = None
    epoch: int | None = None
    step: int | None = None


class CheckpointRef(BaseModel):
    """``last_checkpoint``: the checkpoint a resume would start from."""

    model_config = ConfigDict(extra="forbid")

    path: str
    time: str | None = None  # absent for the checkpoint a run resumed from
    epoch: int
    batch: int
    step: int


class RunStatus(BaseModel):
    """Every field ``status.json`` may hold (module docstring); each is optional until the run sets it."""

    model_config = ConfigDict(extra="forbid")

    pid: int | None = None
    state: Literal[STATES] | None = None  # type: ignore[valid-type]
    run_dir: str | None = None
    started: str | None = None
    epochs: int | None = None
    world_size: int | None = None
    error: str | None = None
    epoch: int | None = None
    batch: int | None = None
    batches: int | None = None
    step: int | None = None
    images_per_s: float | None = None
    epoch_eta_s: float | None = None
    run_eta_s: float | None = None
    lr: float | None = None
    last_metrics: dict[str, float] | None = None
    best: BestEval | None = None
    last_checkpoint: CheckpointRef | None = None
    stopped_by: str | None = None
    updated: str | None = None


def check_fields(names: Iterable[str]) -> None:
    """Raise unless every name is a field of ``RunStatus``: a writer's misspelt or undeclared field
    fails where it is set, not at the next write."""
    unknown = [name for name in names if name not in RunStatus.model_fields]
    if unknown:
        raise ValueError(
            f"{STATUS_FILE}: unknown field(s) {unknown}; expected fields of RunStatus (common.contracts.status_file)"
        )


def write_status_file(path: Path, doc: dict[str, Any]) -> None:
    """Check ``doc`` against ``RunStatus`` and write it atomically, its keys in their order."""
    validate(path, RunStatus, doc)
    write_json(path, doc)


def read_status_file(path: Path) -> dict[str, Any]:
    """The status document as written, checked against ``RunStatus`` (a bad one raises one line naming the field)."""
    doc = read_json(path, what="the run's status")
    validate(path, RunStatus, doc, extra="ignore")
    return doc


def epochs_done(doc: dict[str, Any]) -> float | None:
    """Progress in epochs (2.25: a quarter into the third epoch) from a status document."""
    epoch, batch, batches = doc.get("epoch"), doc.get("batch") or 0, doc.get("batches")
    if not isinstance(epoch, int):
        return None
    return epoch + (batch / batches if batches else 0.0)
