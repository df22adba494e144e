"""The shard plan: a seeded global shuffle, boundaries from counts only, partitions, tar keys."""

from __future__ import annotations

import polars as pl
import pytest

from pawpipe.common.contracts.ingest_tables import MANIFEST, conform
from pawpipe.shards.assign import plan_shards, read_manifest, sample_key, shuffled_splits


def _manifest(n: int) -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "sample_id": [f"id{i:05d}" for i in range(n)],
                "image_path": [f"img/{i}.jpg" for i in range(n)],
                "split": ["val" if i % 4 == 0 else "train" for i in range(n)],
                "label": ["a"] * n,
                "label_id": [i % 3 for i in range(n)],
            }
        ),
        MANIFEST,
    )


def test_shuffle_is_seeded_global_and_ignores_row_order():
    frame = _manifest(1000)
    a = shuffled_splits(frame, seed=7)
    b = shuffled_splits(frame.reverse(), seed=7)
    c = shuffled_splits(frame, seed=8)
    for split in ("train", "val"):
        ids = a[split]["sample_id"].to_list()
        assert ids == b[split]["sample_id"].to_list()
        assert ids != c[split]["sample_id"].to_list()
        assert sorted(ids) == sorted(frame.filter(pl.col("split") == split)["sample_id"].to_list())
    # well mixed: the first 100 rows of train span the whole id range, not a block of it
    first = [int(s[2:]) for s in a["train"]["sample_id"].head(100)]
    assert max(first) - min(first) > 800


def test_plan_boundaries_and_partitions():
    splits = shuffled_splits(_manifest(1000), seed=0)  # 750 train, 250 val
    planned = plan_shards(splits, max_samples=100)
    assert [(p.split, p.index, p.start, p.stop) for p in planned][7:10] == [
        ("train", 7, 700, 750),
        ("val", 0, 0, 100),
        ("val", 1, 100, 200),
    ]
    assert [p.ordinal for p in planned] == list(range(len(planned)))
    for k in (1, 3, 4):
        owners = [[p.name for p in planned if p.partition(k) == i] for i in range(k)]
        assert sorted(sum(owners, [])) == sorted(p.name for p in planned)  # each planned shard in exactly one
        assert max(map(len, owners)) - min(map(len, owners)) <= 1


def test_test_rows_are_planned_last_and_leave_train_and_val_as_they_were():
    frame = _manifest(1000)
    held_out = frame.head(50).with_columns(sample_id=pl.format("t{}", "sample_id"), split=pl.lit("test"))
    plain, both = shuffled_splits(frame, seed=0), shuffled_splits(pl.concat([frame, held_out]), seed=0)
    assert both["train"].equals(plain["train"]) and both["val"].equals(plain["val"]) and plain["test"].is_empty()
    assert sorted(both["test"]["sample_id"]) == sorted(held_out["sample_id"])
    planned = plan_shards(both, max_samples=100)
    assert planned[:11] == plan_shards(plain, max_samples=100)  # 8 train + 3 val shards, same partitions
    assert [(p.split, p.index, p.ordinal, p.start, p.stop) for p in planned[11:]] == [("test", 0, 11, 0, 50)]


@pytest.mark.parametrize(
    ("sample_id", "expected"),
    [("0a1b2c3d4e5f6a7b", "0a1b2c3d4e5f6a7b"), ("frame_01-x", "frame_01-x")],
)
def test_safe_ids_are_their_own_key(sample_id, expected):
    assert sample_key(sample_id) == expected


def test_unsafe_ids_get_a_safe_unique_key():
    ids = ["행복/a.jpg#1", "행복/a.jpg#2", "a b", "a_b", "x" * 100, "..", "/etc/passwd"]
    keys = [sample_key(s) for s in ids]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert key and "." not in key and "/" not in key and len(key) <= 64
        assert all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in key)


def test_read_manifest_rejects_what_the_plan_relies_on(tmp_path):
    frame = _manifest(10)
    frame = pl.concat([frame, frame.head(1)])
    frame.write_parquet(tmp_path / "manifest.parquet")
    with pytest.raises(ValueError, match="sample_id: expected unique"):
        read_manifest(tmp_path)
    _manifest(10).with_columns(split=pl.lit("holdout")).write_parquet(tmp_path / "manifest.parquet")
    with pytest.raises(ValueError, match=r"split: expected one of \('train', 'val', 'test'\), got \['holdout'\]"):
        read_manifest(tmp_path)
