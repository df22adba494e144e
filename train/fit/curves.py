"""Training curves drawn with matplotlib: ``curves.png`` and ``curves.svg`` in the run directory.

Three panels against the optimizer step: loss (train and validation, log scale), accuracy
(train, validation, validation macro-F1) and the learning rate. Dotted vertical lines mark the
ends of epochs; a star marks the evaluation that became ``best.pt``. Both files are rewritten
atomically after every evaluation, so a browser or image viewer always opens a complete chart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pawpipe.common.atomic import atomic_path

FORMATS = ("png", "svg")


def series(events: list[dict[str, Any]], event: str, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` in the ``event`` rows of metrics.jsonl, finite values only."""
    rows = [
        (float(e["step"]), float(e[key]))
        for e in events
        if e.get("event") == event and "step" in e and isinstance(e.get(key), (int, float)) and math.isfinite(e[key])
    ]
    return [s for s, _ in rows], [v for _, v in rows]


def epoch_ends(events: list[dict[str, Any]]) -> list[float]:
    return [float(e["step"]) for e in events if e.get("event") == "eval" and e.get("end_of_epoch")]


def best_eval(events: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The first evaluation with the highest ``metric`` (the one ``best.pt`` holds)."""
    best = None
    for e in events:
        value = e.get(metric) if e.get("event") == "eval" else None
        if isinstance(value, (int, float)) and math.isfinite(value) and (best is None or value > best[metric]):
            best = e
    return best


def draw(events: list[dict[str, Any]], *, best_metric: str = "accuracy"):  # -> matplotlib Figure
    """The figure (not saved): callers and tests can inspect its axes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.2), layout="constrained")
    loss_ax, acc_ax, lr_ax = figure.subplots(1, 3)
    panels = (
        (loss_ax, "loss", [("train", "train", "train_loss"), ("validation", "eval", "loss")]),
        (
            acc_ax,
            "accuracy",
            [
                ("train", "train", "train_accuracy"),
                ("validation", "eval", "accuracy"),
                ("validation macro-F1", "eval", "macro_f1"),
            ],
        ),
        (lr_ax, "learning rate", [("lr", "train", "lr")]),
    )
    for ax, title, lines in panels:
        for label, event, key in lines:
            xs, ys = series(events, event, key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 3 or event == "eval" else None, markersize=3, label=label)
        for step in epoch_ends(events):
            ax.axvline(step, color="0.75", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize="small")
    if any(v > 0 for ax_line in loss_ax.lines for v in ax_line.get_ydata()):
        loss_ax.set_yscale("log")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    best = best_eval(events, best_metric)
    if best is not None and best_metric in ("accuracy", "macro_f1"):
        acc_ax.plot(
            [best["step"]],
            [best[best_metric]],
            marker="*",
            markersize=14,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
            label=f"best.pt ({best_metric} {best[best_metric]:.3f})",
        )
        acc_ax.legend(loc="best", fontsize="small")
    return figure


def write_curves(run_dir: str | Path, events: list[dict[str, Any]], *, best_metric: str = "accuracy") -> list[Path]:
    """``RUN/curves.png`` and ``RUN/curves.svg``, each written atomically."""
    figure = draw(events, best_metric=best_metric)
    written = []
    for fmt in FORMATS:
        path = Path(run_dir) / f"curves.{fmt}"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, dpi=110)
        written.append(path)
    return written


def write_lr_curve(path: str | Path, curve: list[tuple[int, float]]) -> Path:
    """The planned learning rate against the step (``train plan --lr-curve FILE.svg|.png|.pdf``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.5), layout="constrained")
    ax = figure.subplots()
    ax.plot([s for s, _ in curve], [lr for _, lr in curve])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(True, alpha=0.3)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "svg", dpi=110)
    return path
