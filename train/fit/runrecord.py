"""The run directory: what was run, on what, and what happened, so no experiment is lost.

    RUN/config.json      resolved TrainConfig (re-runnable: ``train run --config RUN/config.json``)
    RUN/run.json         seed, git revision (+ dirty flag), package versions, device, command line, dataset
    RUN/metrics.jsonl    one JSON object per line: {"event": "train"|"eval"|"epoch"|..., "step": ..., ...}
    RUN/curves.png|svg   loss / accuracy / learning rate against the optimizer step (train/fit/curves.py)
    RUN/tb/              TensorBoard event files (``tensorboard --logdir RUN/tb``)
    RUN/checkpoints/     last.pt, prev.pt, best.pt (train/fit/checkpoint.py)
    RUN/dynamics/        epoch_NNNN.bSTART-STOP.parquet parts (train/fit/dynamics.py)
    RUN/status.json      what the run is doing now (train/rundir/status.py)

Only the main rank writes; other ranks get a record whose methods do nothing. A resumed run
appends to ``metrics.jsonl`` (after ``train.fit.resume.clean_after`` removed the lines past its
checkpoint) and adds an entry to ``run.json``'s ``resumes``.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pawpipe.common.atomic import write_json
from pawpipe.train.fit.curves import write_curves

log = logging.getLogger(__name__)

PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "polars",
    "pyarrow",
    "pydantic",
    "safetensors",
    "nvidia-dali-cuda130",
    "webdataset",
    "pawpipe",
)


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_revision(folder: str | Path | None = None) -> dict[str, Any]:
    """HEAD commit, whether tracked files have uncommitted changes, and how many files are untracked
    (None values when not a git checkout)."""
    folder = Path(folder or Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None, "untracked": None}
    commit = head.stdout.strip() if head.returncode == 0 else None
    if status.returncode != 0:
        return {"commit": commit, "dirty": None, "untracked": None}
    lines = status.stdout.splitlines()
    untracked = sum(line.startswith("??") for line in lines)
    return {"commit": commit, "dirty": len(lines) > untracked, "untracked": untracked}


class RunRecord:
    def __init__(
        self,
        run_dir: str | Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
        best_metric: str = "accuracy",
    ) -> None:
        """``resume_step``: the step a resumed run continues after (its earlier events are read back for the curves);
        ``best_metric``: the evaluation metric whose best value the curves mark (``best.pt``)."""
        self.dir = Path(run_dir)
        self.enabled = enabled
        self.best_metric = best_metric
        self.events: list[dict[str, Any]] = []
        self._tb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        metrics = self.dir / "metrics.jsonl"
        if resume_step is not None and metrics.is_file():
            for line in metrics.read_text(encoding="utf-8").splitlines():
                try:
                    self.events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill; train.fit.resume.clean_after drops it from the file
        self._metrics = open(metrics, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: metrics go to metrics.jsonl and curves.svg only")
            else:
                # purge_step: TensorBoard hides the events a killed run wrote past its checkpoint.
                purge = resume_step + 1 if resume_step is not None else None
                self._tb = SummaryWriter(log_dir=str(self.dir / "tb"), purge_step=purge)
                log.info("curves: tensorboard --logdir %s (and %s)", self.dir / "tb", self.dir / "curves.png")

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def dynamics(self) -> Path:
        return self.dir / "dynamics"

    def write_start(
        self,
        config: dict[str, Any],
        *,
        seed: int,
        device: str,
        extra: dict[str, Any] | None = None,
        resumed: dict[str, Any] | None = None,
    ) -> None:
        """Write config.json and run.json; a resume (``resumed``: where from) keeps run.json and adds to ``resumes``."""
        if not self.enabled:
            return
        write_json(self.dir / "config.json", config)
        info = {
            "seed": seed,
            "git": git_revision(),
            "packages": package_versions(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "device": device,
            "argv": sys.argv,
            **(extra or {}),
        }
        previous = self.dir / "run.json"
        if resumed is not None and previous.is_file():
            try:
                first = json.loads(previous.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("%s: cannot read (%s); writing a new one", previous, exc)
            else:
                entry = {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **resumed,
                    **{k: info[k] for k in ("git", "device", "argv")},
                }
                info = {**first, "resumes": [*first.get("resumes", []), entry]}
        write_json(previous, info)

    def log(self, event: str, **values: Any) -> None:
        """Append one line to metrics.jsonl (flushed at once) and mirror scalars to TensorBoard."""
        if not self.enabled:
            return
        row = {"event": event, **values}
        self.events.append(row)
        self._metrics.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self._metrics.flush()
        if self._tb is not None and "step" in values:
            for key, value in values.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"{event}/{key}", value, values["step"])

    def write_curves(self) -> None:
        if self.enabled:
            write_curves(self.dir, self.events, best_metric=self.best_metric)

    def close(self) -> None:
        if not self.enabled:
            return
        self.write_curves()
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()
