"""COCO instances JSON -> RECORDS, on real JSON files and JPEGs."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from _fixtures_formats import COCO_CATEGORIES, LAYOUTS, add_test_part, coco_doc, make_coco, write_json

from pawpipe.common.contracts.ingest_tables import RECORDS
from pawpipe.ingest.sources import SourceOptions, coco

OPTS = SourceOptions(workers=1)
CORE = [
    "source_file",
    "record",
    "image_path",
    "group_id",
    "split",
    "label",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "bbox_raw",
    "meta_width",
    "meta_height",
    "parse_error",
    "iscrowd",
]


def test_parses_train_and_val_files_into_exact_records(tmp_path: Path) -> None:
    parsed = coco.parse(make_coco(tmp_path), OPTS)
    train, val = "annotations/instances_train2017.json", "annotations/instances_val2017.json"
    assert parsed.records.columns == [*RECORDS.names, "iscrowd"]
    assert parsed.records.select(CORE).rows() == [
        (
            train,
            "10",
            "train2017/a.jpg",
            "train2017/a.jpg",
            "train",
            "dog",
            1.5,
            2.0,
            30.0,
            20.25,
            None,
            64,
            48,
            None,
            0,
        ),
        (
            train,
            "11",
            "train2017/a.jpg",
            "train2017/a.jpg",
            "train",
            "cat",
            0.0,
            0.0,
            10.0,
            10.0,
            None,
            64,
            48,
            None,
            1,
        ),
        (val, "20", "val2017/c.jpg", "val2017/c.jpg", "val", "cat", 4.0, 5.0, 6.0, 7.0, None, 40, 30, None, 0),
    ]
    assert parsed.extra_columns == ["iscrowd"]
    assert parsed.vocabulary == ("cat", "dog")  # category ids 1, 3 in id order
    assert parsed.orphans.rows() == [("train2017/b.jpg", "train2017/b.jpg")]
    assert parsed.notes["annotation_files"] == [train, val]


@pytest.mark.parametrize(
    ("json_rel", "folders", "expected"),
    [
        ("annotations/instances_val2017.json", ["images/val2017", "val2017", "images"], "images/val2017"),
        ("annotations/instances_val2017.json", ["val2017", "images"], "val2017"),
        ("coco.json", ["images"], "images"),
        ("train/_annotations.coco.json", [], "train"),  # Roboflow: images beside the JSON
        ("train/_annotations.coco.json", ["train/images", "images"], "train/images"),  # next to the JSON first
        ("annotations/instances_x.json", [], "annotations"),
        ("instances_x.json", [], ""),
    ],
)
def test_image_folder_follows_the_documented_order(
    tmp_path: Path, json_rel: str, folders: list[str], expected: str
) -> None:
    for folder in folders:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    write_json(tmp_path / json_rel, coco_doc([], [], {}))
    assert coco.image_folder(tmp_path, json_rel) == expected


def test_roboflow_layout_one_folder_down_with_splits_from_folder_names(tmp_path: Path) -> None:
    for split, file_name in (("train", "a.jpg"), ("valid", "b.jpg"), ("test", "c.jpg")):
        ann = [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1, 2, 3, 4]}]
        write_json(tmp_path / split / "_annotations.coco.json", coco_doc([(0, file_name, 10, 10)], ann, {1: "cat"}))
    assert coco.detect(tmp_path)
    records = coco.parse(tmp_path, OPTS).records
    assert records.select("image_path", "split").rows() == [
        ("test/c.jpg", "test"),
        ("train/a.jpg", "train"),
        ("valid/b.jpg", "val"),
    ]


def test_an_instances_test_file_is_the_test_split(tmp_path: Path) -> None:
    held_out = add_test_part("coco", make_coco(tmp_path))
    records = coco.parse(tmp_path, OPTS).records
    test = "annotations/instances_test2017.json"
    assert records.filter(pl.col("split") == "test").select(CORE[:10]).rows() == [
        (test, "30", held_out[0], held_out[0], "test", "cat", 1.0, 1.0, 10.0, 10.0),
        (test, "31", held_out[1], held_out[1], "test", "dog", 20.0, 20.0, 10.0, 10.0),
        (test, "32", held_out[2], held_out[2], "test", "dog", 2.0, 2.0, 8.0, 8.0),
    ]
    assert records.get_column("split").value_counts().sort("split").rows() == [("test", 3), ("train", 2), ("val", 1)]


def test_dirty_annotations_become_flagged_records_not_exceptions(tmp_path: Path) -> None:
    doc = coco_doc(
        [
            (1, "a.jpg", 64, 0),
            (2, "../../etc/passwd", 10, 10),
            (3, "/abs/x.jpg", 10, 10),
            (4, "sub\\win.jpg", 10, 10),
            (5, "unused.jpg", 8, 8),
        ],
        [
            {"id": 1, "image_id": 1, "category_id": 99, "bbox": [10, "abc", 5, 5]},
            {"id": 2, "image_id": 777, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 3, "image_id": 2, "category_id": 1},
            {"id": 4, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3]},
            "not an object",
            {"id": 6, "image_id": 4, "bbox": [1, 2, 3, 4], "iscrowd": "no"},
        ],
        COCO_CATEGORIES,
    )
    write_json(tmp_path / "instances_default.json", doc)
    parsed = coco.parse(tmp_path, OPTS)
    rows = {r["record"]: r for r in parsed.records.to_dicts()}
    assert list(rows) == ["1", "2", "3", "4", "annotations[4]", "6"]

    unknown_category = rows["1"]
    assert unknown_category["label"] == "99"  # label.unknown quarantines it
    assert (unknown_category["bbox_x"], unknown_category["bbox_y"], unknown_category["bbox_w"]) == (10.0, None, 5.0)
    assert unknown_category["bbox_raw"] == '[10, "abc", 5, 5]'
    assert (unknown_category["meta_width"], unknown_category["meta_height"]) == (64, None)  # a 0 size claims nothing

    assert rows["2"]["image_path"] is None
    assert rows["2"]["parse_error"] == (
        "instances_default.json: annotation 2: expected field 'image_id' naming an entry of images[] with a "
        "file_name, got 777"
    )
    assert rows["3"]["image_path"] == "../../etc/passwd"  # passed through for path.outside_root
    assert [rows["3"][c] for c in ("bbox_x", "bbox_raw", "parse_error")] == [None, None, None]  # no box: bbox.invalid
    assert rows["4"]["image_path"] == "/abs/x.jpg"
    assert (rows["4"]["bbox_x"], rows["4"]["bbox_raw"]) == (None, "[1, 2, 3]")
    assert (
        rows["annotations[4]"]["parse_error"] == "instances_default.json: annotations[4]: expected an object, got str"
    )
    assert (rows["6"]["image_path"], rows["6"]["label"], rows["6"]["iscrowd"]) == ("sub/win.jpg", None, None)
    assert parsed.orphans.get_column("image_path").to_list() == ["unused.jpg"]


def test_a_file_that_does_not_parse_is_one_record_and_the_others_go_on(tmp_path: Path) -> None:
    make_coco(tmp_path)
    bad = tmp_path / "annotations" / "instances_train2017.json"
    bad.write_text(bad.read_text()[:200])
    records = coco.parse(tmp_path, OPTS).records
    failed = records.filter(records["source_file"] == "annotations/instances_train2017.json")
    assert failed.height == 1
    assert failed.item(0, "record") is None
    assert failed.item(0, "parse_error").startswith("annotations/instances_train2017.json: JSON does not parse: ")
    assert records.filter(records["parse_error"].is_null()).get_column("record").to_list() == ["20"]


def test_wrong_top_level_shape_names_the_missing_lists(tmp_path: Path) -> None:
    write_json(tmp_path / "instances_x.json", {"images": [], "annotations": {}})
    records = coco.parse(tmp_path, OPTS).records
    assert records.get_column("parse_error").to_list() == [
        "instances_x.json: expected top-level lists annotations, categories, got keys ['annotations', 'images']"
    ]


def test_only_instances_files_when_captions_and_keypoints_sit_beside_them(tmp_path: Path) -> None:
    make_coco(tmp_path)
    write_json(
        tmp_path / "annotations" / "captions_train2017.json", {"images": [], "annotations": [{"caption": "a cat"}]}
    )
    write_json(tmp_path / "annotations" / "person_keypoints_train2017.json", coco_doc([], [], {1: "person"}))
    write_json(tmp_path / "annotations" / "notes.json", {"owner": "me"})  # not COCO at all
    assert coco.annotation_files(tmp_path) == [
        "annotations/instances_train2017.json",
        "annotations/instances_val2017.json",
    ]


def test_annotations_option_parses_only_the_named_file(tmp_path: Path) -> None:
    make_coco(tmp_path)
    parsed = coco.parse(tmp_path, SourceOptions(annotations="annotations/instances_val2017.json", workers=1))
    assert parsed.records.get_column("record").to_list() == ["20"]
    with pytest.raises(ValueError, match="missing.json: expected a COCO JSON file, got nothing"):
        coco.parse(tmp_path, SourceOptions(annotations="missing.json"))


def test_no_coco_json_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a COCO instances JSON"):
        coco.parse(tmp_path, OPTS)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_detect_accepts_only_its_own_layout(tmp_path: Path, layout: str) -> None:
    assert coco.detect(LAYOUTS[layout](tmp_path)) is (layout == "coco")
