"""CSV / Parquet tables -> RECORDS, on real CSV and Parquet files."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from _fixtures_formats import LAYOUTS, add_test_part, make_table

from pawpipe.common.contracts.ingest_tables import RECORDS, split_alias, split_alias_expr
from pawpipe.ingest.sources import SourceOptions, table

OPTS = SourceOptions(workers=1)


def test_parses_a_csv_into_exact_records(tmp_path: Path) -> None:
    parsed = table.parse(make_table(tmp_path), OPTS)
    assert parsed.records.columns == RECORDS.names
    assert parsed.records.rows() == [
        (
            "boxes.csv",
            "1",
            "images/a.jpg",
            "images/a.jpg",
            None,
            "cat",
            1.0,
            3.0,
            10.0,
            15.0,
            None,
            None,
            None,
            None,
            None,
        ),
        (
            "boxes.csv",
            "2",
            "images/b.jpg",
            "images/b.jpg",
            None,
            "dog",
            2.0,
            4.0,
            20.0,
            16.0,
            None,
            None,
            None,
            None,
            None,
        ),
    ]
    assert parsed.vocabulary is None and parsed.orphans is None and parsed.extra_columns == []


def test_corner_columns_are_pixel_edges(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("File, Class ,XMin,YMin,XMax,YMax\na.jpg,cat,10,20,50.5,80\n")
    records = table.parse(tmp_path, OPTS).records
    assert records.select("image_path", "label", "bbox_x", "bbox_y", "bbox_w", "bbox_h").rows() == [
        ("a.jpg", "cat", 10.0, 20.0, 40.5, 60.0)
    ]


def test_dirty_cells_become_nulls_with_the_raw_box_kept(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "path,label,x,y,w,h\n"
        "a.jpg,cat,10,abc,5,5\n"
        "b.jpg,,1,2,,4\n"
        "..\\..\\etc\\passwd,cat, 1 ,2,3,inf\n"
        ",dog,1,2,3,4\n"
        "sub\\c.jpg,dog,-3,2,3000,4\n"
    )
    records = table.parse(tmp_path, OPTS).records
    assert records.select(
        "record", "image_path", "label", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "bbox_raw", "parse_error"
    ).rows() == [
        ("1", "a.jpg", "cat", 10.0, None, 5.0, 5.0, "x=10, y=abc, w=5, h=5", None),
        ("2", "b.jpg", None, 1.0, 2.0, None, 4.0, "x=1, y=2, w=, h=4", None),
        ("3", "../../etc/passwd", "cat", 1.0, 2.0, 3.0, float("inf"), "x= 1 , y=2, w=3, h=inf", None),
        (
            "4",
            None,
            "dog",
            1.0,
            2.0,
            3.0,
            4.0,
            None,
            "t.csv: row 4: expected field 'path' (an image path), got nothing",
        ),
        ("5", "sub/c.jpg", "dog", -3.0, 2.0, 3000.0, 4.0, None, None),  # geometry is for the bbox rules
    ]


def test_group_split_size_and_extra_columns(tmp_path: Path) -> None:
    pl.DataFrame(
        {
            "image": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"],
            "category": ["cat", "dog", "cat", "dog", "cat"],
            "bbox_x": [1.0, 2.0, 3.0, 4.0, 5.0],
            "bbox_y": [1.0] * 5,
            "bbox_w": [10.0, None, 10.0, 10.0, 10.0],
            "bbox_h": [10.0] * 5,
            "video": ["v1", "v1", None, "v2", ""],
            "subset": ["training", "Validation", "valid", "test", "val2017"],
            "width": [640, 0, 640, 640, 640],
            "height": [480, 480, 480, 480, 480],
            "emotion": ["happy", "calm", "calm", "angry", "calm"],
            "status": ["x"] * 5,
        }
    ).write_parquet(tmp_path / "boxes.parquet")
    parsed = table.parse(tmp_path, OPTS)
    assert parsed.records.select(
        "group_id", "split", "bbox_w", "bbox_raw", "meta_width", "meta_height", "emotion"
    ).rows() == [
        ("v1", "train", 10.0, None, 640, 480, "happy"),
        ("v1", "val", None, "bbox_x=2.0, bbox_y=1.0, bbox_w=, bbox_h=10.0", None, 480, "calm"),
        ("c.jpg", "val", 10.0, None, 640, 480, "calm"),  # no group: the image is the group
        ("v2", "test", 10.0, None, 640, 480, "angry"),
        ("e.jpg", "val", 10.0, None, 640, 480, "calm"),
    ]
    assert parsed.extra_columns == ["emotion"]
    assert parsed.notes["columns_not_kept"] == ["status"]  # would collide with the probe's column


def test_width_and_height_are_the_box_when_x_y_width_height(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "filename,label,x,y,width,height,image_width,image_height\na.jpg,cat,1,2,3,4,64,48\n"
    )
    records = table.parse(tmp_path, OPTS).records
    assert records.select("bbox_w", "bbox_h", "meta_width", "meta_height").rows() == [(3.0, 4.0, 64, 48)]


def test_missing_required_column_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("path,x,y,w,h\na.jpg,1,2,3,4\n")
    with pytest.raises(
        ValueError, match=r"^t\.csv: expected columns for label \(.*\), got columns \['path', 'x', 'y', 'w', 'h'\]$"
    ):
        table.parse(tmp_path, OPTS)


def test_choosing_the_table_file(tmp_path: Path) -> None:
    make_table(tmp_path)
    (tmp_path / "more.csv").write_text("path,label,x,y,w,h\nz.jpg,cat,1,2,3,4\n")
    assert not table.detect(tmp_path)
    with pytest.raises(
        ValueError, match="expected one .csv or .parquet table at the root, got boxes.csv, more.csv; pass --annotations"
    ):
        table.parse(tmp_path, OPTS)
    records = table.parse(tmp_path, SourceOptions(annotations="more.csv", workers=1)).records
    assert records.select("source_file", "image_path").rows() == [("more.csv", "z.jpg")]


def test_a_table_that_does_not_parse_is_one_record(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes(b"path,label,x,y,w,h\na.jpg,cat,1,2,3,4,5\n")
    records = table.parse(tmp_path, OPTS).records
    assert records.select("source_file", "record", "parse_error").rows() == [
        ("t.csv", None, "t.csv: table does not parse: found more fields than defined in 'Schema'")
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("train", "train"),
        ("Training", "train"),
        ("val2017", "val"),
        ("valid", "val"),
        ("validation", "val"),
        ("test", "test"),
        ("Testing", "test"),
        (" test2017", "test"),
        ("trainval", None),
        ("test-dev", None),
    ],
)
def test_split_alias(value: str, expected: str | None) -> None:
    assert split_alias(value) == expected
    column = pl.DataFrame({"split": [value]}).select(split_alias_expr(pl.col("split")))
    assert column.item() == expected  # the column form the table source uses


def test_a_split_column_saying_test_is_the_test_split(tmp_path: Path) -> None:
    held_out = add_test_part("table", make_table(tmp_path))
    records = table.parse(tmp_path, OPTS).records
    assert records.select("image_path", "split").rows() == [
        ("images/a.jpg", None),
        ("images/b.jpg", None),
        *((path, "test") for path in held_out),
    ]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_detect_accepts_only_its_own_layout(tmp_path: Path, layout: str) -> None:
    assert table.detect(LAYOUTS[layout](tmp_path)) is (layout == "table")
