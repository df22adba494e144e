"""Train/validation splits: grouped (a video never straddles) and stratified by class; a dataset's
held-out test rows stay where it put them."""

from __future__ import annotations

import numpy as np
import polars as pl

from pawpipe.common.contracts.ingest_tables import HELD_OUT


def assign_splits(frame: pl.DataFrame, *, val_fraction: float, seed: int) -> pl.DataFrame:
    """Fill null ``split`` values group by group; rows that already carry a split keep it.

    A group with rows in the held-out split (``test``) takes its rows without a split there too,
    so no group straddles test and training. The other groups are split into train and val: each
    takes its majority label as its stratum. Within a stratum the groups are put in a seeded
    random order and a group goes to ``val`` while the running sample count at its midpoint is
    below ``val_fraction`` of the stratum, so every class gets close to its share, and a class
    with a single group stays in ``train``. No row is ever assigned to test.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction: expected a number in [0, 1), got {val_fraction}")
    held_out = frame.filter(pl.col("split") == HELD_OUT).get_column("group_id").drop_nulls().unique()
    if held_out.len():
        joins = pl.col("split").is_null() & pl.col("group_id").is_in(held_out.implode())
        frame = frame.with_columns(split=pl.when(joins).then(pl.lit(HELD_OUT)).otherwise(pl.col("split")))
    todo = frame.filter(pl.col("split").is_null() & pl.col("group_id").is_not_null())
    if todo.is_empty():
        return frame
    groups = (
        todo.group_by("group_id")
        .agg(n=pl.len(), stratum=pl.col("label").fill_null("").mode().sort().first())
        .sort("group_id")
    )
    order = np.random.default_rng(seed).permutation(groups.height)
    groups = (
        groups.with_columns(_order=pl.Series(order))
        .sort("_order")
        .with_columns(
            _cum=pl.col("n").cum_sum().over("stratum"),
            _total=pl.col("n").sum().over("stratum"),
        )
        .with_columns(
            _split=pl.when((pl.col("_cum") - pl.col("n") / 2) < val_fraction * pl.col("_total"))
            .then(pl.lit("val"))
            .otherwise(pl.lit("train"))
        )
        .select("group_id", "_split")
    )
    return (
        frame.join(groups, on="group_id", how="left", maintain_order="left")
        .with_columns(split=pl.coalesce("split", "_split"))
        .drop("_split")
    )


def groups_in_both_splits(frame: pl.DataFrame) -> list[str]:
    """Group ids that have rows in more than one split (leakage); empty when the split is sound."""
    both = frame.group_by("group_id").agg(pl.col("split").n_unique().alias("k")).filter(pl.col("k") > 1)
    return sorted(both.get_column("group_id").drop_nulls().to_list())
