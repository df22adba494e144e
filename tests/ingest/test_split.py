"""Grouped, stratified splits; a dataset's held-out test part kept through ``ingest clean``."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _fixtures_formats import LAYOUTS, add_test_part, make_yolo, write_jpeg

from pawpipe.ingest.clean import clean
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.split import assign_splits, groups_in_both_splits


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


def test_a_group_with_test_rows_keeps_its_unassigned_rows_in_test() -> None:
    rows = [{"group_id": "v1", "label": "a", "split": s} for s in ("test", None, None)]
    rows += [{"group_id": f"g{g}", "label": "a", "split": None} for g in range(20)]
    frame = pl.DataFrame(rows, schema_overrides={"split": pl.String})
    for seed in range(5):
        out = assign_splits(frame, val_fraction=0.5, seed=seed)
        assert out.filter(pl.col("group_id") == "v1").get_column("split").to_list() == ["test"] * 3
        assert out.filter(pl.col("split") == "test").height == 3  # no other row is ever assigned to test
        assert out.filter(pl.col("group_id") != "v1").get_column("split").value_counts().sort("split").rows() == [
            ("train", 10),
            ("val", 10),
        ]
        assert groups_in_both_splits(out) == []


# Split counts of the clean manifest of each format's small dataset with its test part (add_test_part).
CLEAN_SPLITS = {
    "coco": {"train": 2, "test": 3},
    "table": {"train": 2, "test": 3},
    "voc": {"train": 2, "val": 1, "test": 3},
    "yolo": {"train": 3, "test": 3},
}


@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
def test_a_datasets_test_part_ends_in_test_and_nothing_else_does(fmt: str, tmp_path: Path) -> None:
    root = LAYOUTS[fmt](tmp_path / "raw")
    held_out = add_test_part(fmt, root)
    out = tmp_path / "out"
    result = clean(
        CleanConfig(root=root, out=out, workers=1, quiet=True, max_quarantine_fraction=1.0, val_fraction=0.5)
    )
    manifest = result.manifest
    assert dict(manifest.group_by("split").len().iter_rows()) == CLEAN_SPLITS[fmt]
    assert sorted(manifest.filter(pl.col("split") == "test").get_column("image_path")) == sorted(held_out)
    assert manifest.filter(pl.col("image_path").is_in(held_out)).get_column("split").unique().to_list() == ["test"]
    report = json.loads((out / "report.json").read_text())
    assert {s: v["samples"] for s, v in report["splits"].items()} == {"train": 0, "val": 0, **CLEAN_SPLITS[fmt]}
    assert list(report["splits"]) == ["train", "val", "test"]
    labels = json.loads((out / "labels.json").read_text())
    assert list(labels["counts"]) == ["train", "val", "test", "all"]
    assert sum(labels["counts"]["test"].values()) == len(held_out) == 3
    assert labels["class_weights"]["computed_on"] == "train"
    assert "test (3 in 2 groups)" in (out / "report.html").read_text()


def test_a_train_val_dataset_lists_no_test_split(tmp_path: Path) -> None:
    clean(CleanConfig(root=LAYOUTS["voc"](tmp_path / "raw"), out=tmp_path / "out", workers=1, quiet=True))
    assert list(json.loads((tmp_path / "out" / "report.json").read_text())["splits"]) == ["train", "val"]
    assert list(json.loads((tmp_path / "out" / "labels.json").read_text())["counts"]) == ["train", "val", "all"]


def test_a_video_with_a_test_row_goes_to_test_whole(tmp_path: Path) -> None:
    """A table whose split column marks one frame of video v1 as test and leaves its others empty."""
    for i, name in enumerate("abcdef"):
        write_jpeg(tmp_path / "raw" / f"{name}.jpg", (40 + i, 40))  # distinct sizes: distinct bytes
    (tmp_path / "raw" / "boxes.csv").write_text(
        "path,label,x,y,w,h,video,split\n"
        "a.jpg,cat,1,1,10,10,v1,test\nb.jpg,cat,1,1,10,10,v1,\nc.jpg,cat,1,1,10,10,v1,\n"
        "d.jpg,cat,1,1,10,10,v2,\ne.jpg,cat,1,1,10,10,v3,\nf.jpg,cat,1,1,10,10,v4,\n"
    )
    result = clean(CleanConfig(root=tmp_path / "raw", out=tmp_path / "out", workers=1, quiet=True, val_fraction=0.5))
    splits = result.manifest.select("image_path", "group_id", "split").sort("image_path").rows()
    assert [row for row in splits if row[1] == "v1"] == [
        ("a.jpg", "v1", "test"),
        ("b.jpg", "v1", "test"),
        ("c.jpg", "v1", "test"),
    ]
    assert sorted(s for _, g, s in splits if g != "v1") == ["train", "train", "val"]
    assert result.report["groups_in_both_splits"] == []


def test_the_same_image_in_train_and_test_is_quarantined_from_test(tmp_path: Path) -> None:
    root = make_yolo(tmp_path / "raw")
    add_test_part("yolo", root)
    (root / "images" / "test" / "d.jpg").write_bytes((root / "images" / "train" / "a.jpg").read_bytes())
    result = clean(CleanConfig(root=root, out=tmp_path / "out", workers=1, quiet=True))
    assert result.quarantine.select("image_path", "split", "rule").rows() == [
        ("images/test/d.jpg", "test", ["image.duplicate"]),
        ("images/test/d.jpg", "test", ["image.duplicate"]),
    ]
    assert "got the same bytes as group 'images/train/a.jpg'" in result.quarantine.get_column("detail")[0]
    assert dict(result.manifest.group_by("split").len().iter_rows()) == {"train": 3, "test": 1}
    assert result.manifest.filter(pl.col("image_path") == "images/train/a.jpg").get_column("split").to_list() == [
        "train",
        "train",
    ]
