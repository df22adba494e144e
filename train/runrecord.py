"""The run directory: what was run, on what, and what happened, so no experiment is lost.

    RUN/config.json      resolved TrainConfig (re-runnable: ``train run --config RUN/config.json``)
    RUN/run.json         seed, git revision (+ dirty flag), package versions, device, command line, dataset
    RUN/metrics.jsonl    one JSON object per line: {"event": "train"|"eval"|"epoch"|..., "step": ..., ...}
    RUN/curves.svg       loss / accuracy / learning rate against the optimizer step (opens in any browser)
    RUN/tb/              TensorBoard event files, when the ``tensorboard`` package is installed
    RUN/checkpoints/     last.pt, prev.pt, best.pt (train/checkpoint.py)
    RUN/dynamics/        epoch_NNNN.bSTART-STOP.parquet parts (train/dynamics.py)
    RUN/status.json      what the run is doing now (train/status.py)

Only the main rank writes; other ranks get a record whose methods do nothing. A resumed run
appends to ``metrics.jsonl`` (after ``train.resume.clean_after`` removed the lines past its
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

from ingest.atomic import write_json, write_text

log = logging.getLogger(__name__)

PACKAGES = ("torch", "torchvision", "timm", "numpy", "polars", "pyarrow", "pydantic", "safetensors", "nvidia-dali-cuda130", "webdataset", "pawpipe")


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
        status = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None, "untracked": None}
    commit = head.stdout.strip() if head.returncode == 0 else None
    if status.returncode != 0:
        return {"commit": commit, "dirty": None, "untracked": None}
    lines = status.stdout.splitlines()
    untracked = sum(line.startswith("??") for line in lines)
    return {"commit": commit, "dirty": len(lines) > untracked, "untracked": untracked}


class RunRecord:
    def __init__(self, run_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None) -> None:
        """``resume_step``: the step a resumed run continues after (its earlier events are read back for the curves)."""
        self.dir = Path(run_dir)
        self.enabled = enabled
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
                    continue  # a line cut short by a kill; train.resume.clean_after drops it from the file
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

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def dynamics(self) -> Path:
        return self.dir / "dynamics"

    def write_start(
        self, config: dict[str, Any], *, seed: int, device: str, extra: dict[str, Any] | None = None,
        resumed: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
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
                entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **resumed,
                         **{k: info[k] for k in ("git", "device", "argv")}}  # fmt: skip
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
            write_text(self.dir / "curves.svg", curves_svg(self.events))

    def close(self) -> None:
        if not self.enabled:
            return
        self.write_curves()
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()


# -- the plot: three panels of polylines, no plotting library needed ----------------------------------
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _series(events: list[dict[str, Any]], event: str, key: str) -> list[tuple[float, float]]:
    return [
        (float(e["step"]), float(e[key]))
        for e in events
        if e.get("event") == event and isinstance(e.get(key), (int, float)) and math.isfinite(e[key]) and "step" in e
    ]


def svg_panel(x0: float, title: str, lines: list[tuple[str, list[tuple[float, float]]]], *, w: int, h: int) -> str:
    parts = [f'<g transform="translate({x0},0)"><text x="{w / 2}" y="16" text-anchor="middle" font-weight="bold">{title}</text>']
    left, top, right, bottom = 56, 28, w - 10, h - 44
    parts.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#999"/>')
    points = [p for _, series in lines for p in series]
    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        xmin, xmax = min(xs), max(max(xs), min(xs) + 1)
        ymin, ymax = min(ys), max(ys)
        if ymax <= ymin:  # a flat line: give it a band to sit in
            ymin, ymax = ymin - max(abs(ymin) * 0.1, 1e-12), ymax + max(abs(ymax) * 0.1, 1e-12)
        sx = lambda v: left + (v - xmin) / (xmax - xmin) * (right - left)  # noqa: E731
        sy = lambda v: bottom - (v - ymin) / (ymax - ymin) * (bottom - top)  # noqa: E731
        for frac in (0.0, 0.5, 1.0):
            yv = ymin + frac * (ymax - ymin)
            parts.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>')
            xv = xmin + frac * (xmax - xmin)
            parts.append(f'<text x="{sx(xv):.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">{xv:.0f}</text>')
        for i, (label, series) in enumerate(lines):
            colour = _COLOURS[i % len(_COLOURS)]
            if len(series) == 1:
                x, y = series[0]
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
            elif series:
                path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
            x_legend = left + sum(7 * len(name) + 14 for name, _ in lines[:i])
            parts.append(f'<text x="{x_legend}" y="{h - 3}" font-size="11" fill="{colour}">&#9632; {label}</text>')
    else:
        parts.append(f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle" fill="#999">no data yet</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{bottom + 26}" text-anchor="middle" font-size="10">optimizer step</text></g>')
    return "".join(parts)


def svg_chart(panels: list[tuple[str, list[tuple[str, list[tuple[float, float]]]]]], *, w: int = 380, h: int = 280) -> str:
    """Side-by-side panels, each ``(title, [(legend, [(step, value), ...]), ...])``, as one SVG document."""
    body = "".join(svg_panel(i * w, title, lines, w=w, h=h) for i, (title, lines) in enumerate(panels))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * len(panels)}" height="{h}" '
        f'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>{body}</svg>\n'
    )


def curves_svg(events: list[dict[str, Any]]) -> str:
    """Loss (train, val), accuracy (train, val, val macro-F1) and learning rate against the step."""
    return svg_chart(
        [
            ("loss", [("train", _series(events, "train", "train_loss")), ("val", _series(events, "eval", "loss"))]),
            (
                "accuracy",
                [
                    ("train", _series(events, "train", "train_accuracy")),
                    ("val", _series(events, "eval", "accuracy")),
                    ("val macro-F1", _series(events, "eval", "macro_f1")),
                ],
            ),
            ("learning rate", [("lr", _series(events, "train", "lr"))]),
        ]
    )
