"""Per-sample importance scores for data pruning: EL2N, forgetting counts and AUM, from training dynamics.

    scores = importance_scores([RUN_DIR])          # or: train scores RUN_DIR --out scores.parquet

* **EL2N** (Paul et al., NeurIPS 2021): ``|| softmax(x) - onehot(label) ||_2`` early in training.
  Samples the model already gets right with confidence after a few epochs score near 0 and teach
  it little; the paper prunes the lowest scores first. Taken from the ``probs`` the training step
  recorded (no extra forward pass), at ``el2n_epoch`` (default: 10 % into training, never the very
  first epoch of a longer run), averaged over the runs given (the paper averages initialisations).
* **Forgetting counts** (Toneva et al., ICLR 2019): correct -> incorrect transitions over epochs;
  ``forgetting_score`` ranks never-learned samples above every count (``train.audit.forgetting``).
* **AUM** (Pleiss et al., NeurIPS 2020): the mean logit margin over epochs (``train.audit.aum``).

Runs with threshold samples: those samples' rows (trained as the extra class) are left out, as in
the audit. Rows of skipped (non-finite) updates never enter a score.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from pawpipe.common.atomic import write_parquet
from pawpipe.train.audit.audit import RunDynamics, load_run
from pawpipe.train.fit.dynamics import read_dynamics

SCORES = (
    "sample_id",
    "label_id",
    "el2n",
    "el2n_epoch",
    "forgetting_events",
    "never_learned",
    "forgetting_score",
    "aum",
    "epochs",
)


def default_el2n_epoch(epochs: list[int]) -> int:
    """The recorded epoch 10 % into training (rounded up), and never the first of two or more."""
    epochs = sorted(set(epochs))
    index = min(max(math.ceil(0.1 * len(epochs)), 1), len(epochs) - 1) if len(epochs) > 1 else 0
    return epochs[index]


def el2n(dynamics: pl.DataFrame, *, epoch: int, num_classes: int) -> pl.DataFrame:
    """Per sample seen at ``epoch``: ``el2n``, the L2 norm of its probability vector minus its one-hot label.

    Only the first ``num_classes`` probabilities count (a threshold run's extra class is dropped
    and the rest renormalised); a sample seen twice in the epoch gets the mean.
    """
    rows = dynamics.filter((pl.col("epoch") == epoch) & pl.col("finite") & (pl.col("label_id") < num_classes))
    if rows.is_empty():
        raise ValueError(
            f"dynamics: no finite rows at epoch {epoch}; recorded epochs: "
            f"{sorted(dynamics.get_column('epoch').unique())}"
        )
    probs = rows.get_column("probs").to_numpy().astype(np.float64)[:, :num_classes]
    probs /= np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    labels = rows.get_column("label_id").to_numpy()
    probs[np.arange(labels.size), labels] -= 1.0
    return (
        pl.DataFrame({"sample_id": rows.get_column("sample_id"), "el2n": np.linalg.norm(probs, axis=1)})
        .group_by("sample_id")
        .agg(pl.col("el2n").mean())
        .sort("sample_id")
    )


def _run_scores(run: RunDynamics, epoch: int | None) -> pl.DataFrame:
    """One run's scores, from its epoch-at-a-time summary and the one epoch EL2N reads."""
    summary = run.summary
    at = default_el2n_epoch(summary.epochs) if epoch is None else epoch
    rows = read_dynamics(run.path / "dynamics", epoch=at) if at in summary.epochs else None
    if rows is None or rows.filter(pl.col("finite")).is_empty():
        raise ValueError(f"dynamics: no finite rows at epoch {at}; recorded epochs: {summary.epochs}")
    rows = rows if run.extra_class is None else rows.filter(pl.col("label_id") != run.extra_class)
    aum_rows = summary.aum if run.extra_class is None else summary.aum.filter(pl.col("label_id") != run.extra_class)
    return (
        summary.labels.join(el2n(rows, epoch=at, num_classes=len(run.vocabulary)), on="sample_id", how="left")
        .with_columns(el2n_epoch=pl.lit(at, dtype=pl.Int64))
        .join(
            summary.forgetting.select("sample_id", "forgetting_events", "never_learned", "forgetting_score"),
            on="sample_id",
            how="left",
        )
        .join(aum_rows.select("sample_id", "aum", pl.col("epochs").cast(pl.Int64)), on="sample_id", how="left")
    )


def importance_scores(runs: list[str | Path], *, el2n_epoch: int | None = None) -> pl.DataFrame:
    """One row per training sample (``SCORES`` columns): each score averaged over ``runs``.

    ``never_learned`` holds only when no run learned the sample; ``epochs`` is summed.
    """
    if not runs:
        raise ValueError("train scores: expected at least one run directory")
    per_run = [_run_scores(load_run(r), el2n_epoch) for r in runs]
    return (
        pl.concat(per_run)
        .group_by("sample_id")
        .agg(
            pl.col("label_id").first(),
            pl.col("el2n").mean(),
            pl.col("el2n_epoch").min(),
            pl.col("forgetting_events").mean(),
            pl.col("never_learned").all(),
            pl.col("forgetting_score").mean(),
            pl.col("aum").mean(),
            pl.col("epochs").sum(),
        )
        .select(SCORES)
        .sort("sample_id")
    )


def write_scores(runs: list[str | Path], out: str | Path, *, el2n_epoch: int | None = None) -> pl.DataFrame:
    """``importance_scores`` written atomically to ``out`` (Parquet)."""
    scores = importance_scores(runs, el2n_epoch=el2n_epoch)
    write_parquet(Path(out), scores)
    return scores
