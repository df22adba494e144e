"""Resuming a run directory: is its checkpoint the same run, and what must be cleaned before going on.

A run directory resumes from its own ``checkpoints/last.pt`` only when the config asked for now
matches the one saved in the checkpoint in every field that changes the trained weights or what
the run means. Fields that do not (``NEUTRAL``) may differ: where the run and the shards live,
hardware placement and thread counts, logging, status and checkpoint cadence, evaluation batch
size and mid-epoch evaluation cadence. ``schedule.epochs`` does matter: the cosine decay is
stretched over all epochs, so a longer run has a different learning rate at every step after the
warm-up. Anything else that differs is refused in one line that names the fields; ``--new``
moves the old run aside and starts over.

Before training goes on, everything written after the checkpoint is removed, so that the resumed
run writes each step once: ``metrics.jsonl`` lines past the checkpoint's step, per-sample
dynamics parts past its batch (``train.fit.dynamics.prune_parts``), and temporary files of writes that
were cut short (``.*.tmp``).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pawpipe.common.atomic import write_text
from pawpipe.common.contracts.status_file import STATUS_FILE
from pawpipe.train.config import TrainConfig
from pawpipe.train.fit.checkpoint import LAST, latest_checkpoint, load_checkpoint
from pawpipe.train.fit.dynamics import prune_parts
from pawpipe.train.rundir.status import read_status

log = logging.getLogger(__name__)

# Dotted config keys (or section prefixes ending in ".") that may change between a run and its resume.
NEUTRAL = (
    "out_dir",
    "run_name",  # where the run directory is
    "data.shards",  # the shards may move; the loader checks their sample count, the run its vocabulary
    "data.workers",
    "data.eval_batch_size",
    "data.loader",  # the loader state check refuses a different backend
    "compute.device",
    "compute.cpu_threads",
    "compute.compile",
    "compute.channels_last",
    "compute.deterministic",
    "eval.every_steps",  # extra evaluations do not touch the weights
    "record.",
    "checkpoint.",
)


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _neutral(key: str) -> bool:
    return any(key == n or (n.endswith(".") and key.startswith(n)) for n in NEUTRAL)


def config_differences(
    saved: dict[str, Any], current: dict[str, Any], *, defaults: dict[str, Any] | None = None, neutral: bool = False
) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every field that matters and differs (JSON-mode dumps);
    ``neutral``: for the fields that may differ (``NEUTRAL``) instead, where the run is (``out_dir``,
    ``run_name``) aside.

    ``defaults``: the config's defaults; a field the saved config lacks (one the config gained after
    that checkpoint was written, e.g. ``data.jitter``) compares as its default, what the run used.
    """
    a, b = {**_flatten(defaults or {}), **_flatten(saved)}, _flatten(current)
    missing = object()
    found = []
    for key in sorted(set(a) | set(b)):
        if _neutral(key) != neutral or key in ("out_dir", "run_name"):
            continue
        old, new = a.get(key, missing), b.get(key, missing)
        if isinstance(old, list) and isinstance(new, (list, tuple)):
            new = list(new)
        if old != new:
            found.append((key, None if old is missing else old, None if new is missing else new))
    return found


def _listed(diffs: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in diffs)


def finished_run(run_dir: Path, current_config: dict[str, Any]) -> str | None:
    """What ``train run`` says of a run directory whose run finished; None when it holds no finished run.

    A finished run trains no further: an option that would change what it trained (``config_differences``:
    more epochs, another learning rate) is refused in one line naming each one and the way to get it;
    one that changes nothing once it is done (``NEUTRAL``: the device, the shards' place) is named as
    ignored. The recorded config is the run's ``config.json``.
    """
    if not (run_dir / STATUS_FILE).is_file():
        return None
    doc = read_status(run_dir)
    if doc.get("state") != "finished":
        return None
    recorded_path = run_dir / "config.json"
    try:
        recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{recorded_path}: cannot read the finished run's config ({exc}); start over with --new"
        ) from None
    defaults = TrainConfig().model_dump(mode="json")
    done = f"{doc.get('epoch')} of {doc.get('epochs')} epochs, stopped by {doc.get('stopped_by')}"
    differ = config_differences(recorded, current_config, defaults=defaults)
    if differ:
        if doc.get("stopped_by") == "epochs" and any(key == "schedule.epochs" for key, _, _ in differ):
            way = (
                f"To train on for more epochs, start a new run from its checkpoint: train run --config {recorded_path} "
                f"--out {run_dir}-longer --resume {run_dir / 'checkpoints' / LAST} (with the same options); "
                "or start over with --new"
            )
        else:
            way = "To train with them, give it a new run directory (--out DIR or --name NAME) or start over with --new"
        raise ValueError(
            f"{run_dir}: finished ({done}); it trains no further with other options: {_listed(differ)}. {way}"
        )
    ignored = config_differences(recorded, current_config, defaults=defaults, neutral=True)
    said = f"nothing to resume, so these options were ignored: {_listed(ignored)}." if ignored else "nothing to resume."
    return f"run {run_dir}: already finished ({done}); {said} `train run --new --out {run_dir}` starts over"


@dataclass
class ResumePoint:
    """Where a run (re)starts: the checkpoint to load (None: from scratch) and its position."""

    checkpoint: Path | None = None
    own: bool = False  # the run directory's own checkpoint (False: --resume from another run, or none)
    epoch: int = 0
    batch: int = 0
    step: int = 0


def find_resume_point(
    run_dir: Path, current_config: dict[str, Any], *, vocabulary: list[str], resume_from: str | Path | None = None
) -> ResumePoint:
    """The run directory's own checkpoint when it has one (refused if the config differs), else
    ``resume_from`` (a checkpoint of another run: its weights and position, this config), else scratch."""
    found = latest_checkpoint(run_dir / "checkpoints")
    own = found is not None
    if found is None and resume_from is not None:
        found = Path(resume_from), load_checkpoint(resume_from)
    if found is None:
        return ResumePoint()
    path, state = found
    if own:
        diffs = config_differences(state["config"], current_config, defaults=TrainConfig().model_dump(mode="json"))
        if diffs:
            raise ValueError(
                f"{run_dir}: holds a checkpoint of a different run ({path.name} at step {state['progress']['step']}): "
                f"{_listed(diffs)}; resume with the run's own config (train run --out {run_dir}) or start over with "
                "--new"
            )
    if list(state["vocabulary"]) != list(vocabulary):
        raise ValueError(
            f"{path}: vocabulary {state['vocabulary']} differs from the shards' {vocabulary}; label ids would not match"
        )
    p = state["progress"]
    return ResumePoint(checkpoint=path, own=own, epoch=p["epoch"], batch=p["batch_in_epoch"], step=p["step"])


def clean_after(run_dir: Path, point: ResumePoint) -> dict[str, int]:
    """Remove what was written after ``point`` (see the module docstring); return what was removed."""
    removed = {"temporary_files": 0, "metrics_lines": 0, "dynamics_parts": 0}
    for folder in (run_dir, run_dir / "checkpoints"):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
            removed["temporary_files"] += 1
    if (run_dir / "dynamics").is_dir():
        gone = prune_parts(run_dir / "dynamics", epoch=point.epoch, batch=point.batch)
        removed["dynamics_parts"] = sum(p.suffix == ".parquet" for p in gone)
        removed["temporary_files"] += len(gone) - removed["dynamics_parts"]
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        kept, dropped = [], 0
        for line in metrics.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the last line of a process killed mid-write
                dropped += 1
                continue
            if isinstance(row.get("step"), int) and row["step"] > point.step:
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            write_text(metrics, "".join(line + "\n" for line in kept))
        removed["metrics_lines"] = dropped
    return removed


def move_aside(run_dir: Path) -> Path:
    """``--new``: rename a run directory to ``<name>.replaced-<time>`` beside it (nothing is deleted)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    suffix = 1
    while target.exists():
        target = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}-{suffix}")
        suffix += 1
    shutil.move(str(run_dir), str(target))
    return target
