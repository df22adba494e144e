"""Grouped, stratified splits."""

from __future__ import annotations

import polars as pl

from ingest.split import assign_splits, groups_in_both_splits


def test_groups_never_straddle_and_classes_get_their_share() -> None:
    rows = [{"group_id": f"{c}-{g}", "label": c, "split": None} for c in "abc" for g in range(20) for _ in range(5)]
    out = assign_splits(pl.DataFrame(rows, schema_overrides={"split": pl.String}), val_fraction=0.2, seed=3)
    assert groups_in_both_splits(out) == []
    per_class = out.group_by("label").agg((pl.col("split") == "val").mean().alias("share"))
    assert all(abs(s - 0.2) <= 0.05 for s in per_class.get_column("share"))


def test_existing_split_is_kept_and_seed_is_deterministic() -> None:
    rows = [{"group_id": f"g{g}", "label": "a", "split": "val" if g == 0 else None} for g in range(30)]
    frame = pl.DataFrame(rows, schema_overrides={"split": pl.String})
    one = assign_splits(frame, val_fraction=0.3, seed=1)
    assert one.filter(pl.col("group_id") == "g0").get_column("split").to_list() == ["val"]
    assert one.equals(assign_splits(frame, val_fraction=0.3, seed=1))
    assert not one.equals(assign_splits(frame, val_fraction=0.3, seed=2))


def test_a_class_with_one_group_stays_in_train() -> None:
    frame = pl.DataFrame([{"group_id": "only", "label": "rare", "split": None}], schema_overrides={"split": pl.String})
    assert assign_splits(frame, val_fraction=0.2, seed=0).get_column("split").to_list() == ["train"]
