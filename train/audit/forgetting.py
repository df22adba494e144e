"""Forgetting events (Toneva et al., ICLR 2019) from the per-epoch predictions in the training dynamics.

A forgetting event is a sample going from correctly classified at one presentation to
misclassified at the next (here: one presentation per epoch, ``pred_id == label_id``). Samples
that are forgotten often, or never learned at all, are the hard and the mislabelled ones; the paper
counts a never-learned sample as forgotten infinitely often, ranked above every other.
Rows of skipped (non-finite) updates are left out.
"""

from __future__ import annotations

import polars as pl


def forgetting(dynamics: pl.DataFrame) -> pl.DataFrame:
    """Per sample: ``forgetting_events``, ``never_learned``, ``epochs``, and ``forgetting_score``
    (events, or the number of epochs + 1 when never learned, so it outranks any count)."""
    rows = dynamics.filter(pl.col("finite")) if "finite" in dynamics.columns else dynamics
    per_epoch = (
        rows.group_by("sample_id", "epoch")
        .agg(correct=(pl.col("pred_id") == pl.col("label_id")).last())
        .sort("sample_id", "epoch")
    )
    events = per_epoch.with_columns(
        forgot=(pl.col("correct").shift(1).over("sample_id") & ~pl.col("correct")).fill_null(False)
    )
    return (
        events.group_by("sample_id")
        .agg(
            forgetting_events=pl.col("forgot").sum().cast(pl.Int64),
            never_learned=~pl.col("correct").any(),
            epochs=pl.len().cast(pl.Int64),
        )
        .with_columns(
            forgetting_score=pl.when(pl.col("never_learned"))
            .then(pl.col("epochs") + 1)
            .otherwise(pl.col("forgetting_events"))
            .cast(pl.Float64)
        )
        .sort("sample_id")
    )
