"""YOLO txt labels -> RECORDS (normalised boxes) and ``to_pixels``, on real txt files and JPEGs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from _fixtures_formats import LAYOUTS, add_test_part, make_yolo, write_jpeg

from pawpipe.common.contracts.ingest_tables import RECORDS
from pawpipe.ingest.sources import SourceOptions, yolo

OPTS = SourceOptions(workers=1)
CORE = [
    "source_file",
    "record",
    "image_path",
    "group_id",
    "split",
    "label",
    "bbox_x",
    "bbox_raw",
    "parse_error",
    "norm_cx",
    "norm_cy",
    "norm_w",
    "norm_h",
]


def test_parses_ultralytics_layout_into_exact_records(tmp_path: Path) -> None:
    parsed = yolo.parse(make_yolo(tmp_path), OPTS)
    a, b = "images/train/a.jpg", "images/train/b.png"
    assert parsed.records.columns == [*RECORDS.names, "norm_cx", "norm_cy", "norm_w", "norm_h"]
    assert parsed.records.select(CORE).rows() == [
        ("labels/train/a.txt", "1", a, a, "train", "dog", None, None, None, 0.5, 0.5, 0.25, 0.5),
        ("labels/train/a.txt", "2", a, a, "train", "cat", None, None, None, 0.25, 0.75, 0.5, 0.5),
        ("labels/train/b.txt", "1", b, b, "train", "cat", None, None, None, 0.5, 0.5, 1.0, 1.0),
    ]
    assert (
        parsed.records.select("bbox_y", "bbox_w", "bbox_h", "meta_width", "meta_height").null_count().row(0) == (3,) * 5
    )
    assert parsed.vocabulary == ("cat", "dog")
    assert parsed.notes["normalised_boxes"] is True and parsed.notes["names_file"] == "data.yaml"
    assert parsed.orphans.rows() == [("images/val/c.jpg", "images/val/c.jpg")]  # an empty label file: background


def test_to_pixels_converts_centre_boxes_exactly() -> None:
    frame = pl.DataFrame(
        {
            "norm_cx": [0.5, 0.25, 0.5, None],
            "norm_cy": [0.5, 0.75, 0.5, 0.5],
            "norm_w": [0.25, 0.5, 1.0, 0.5],
            "norm_h": [0.5, 0.5, 1.0, 0.5],
            "width": [64, 64, 32, 64],
            "height": [48, 48, 32, None],
        }
    )
    out = yolo.to_pixels(frame).select("bbox_x", "bbox_y", "bbox_w", "bbox_h").rows()
    assert out == [(24.0, 12.0, 16.0, 24.0), (0.0, 24.0, 32.0, 24.0), (0.0, 0.0, 32.0, 32.0), (None, None, 32.0, None)]


def test_parse_then_to_pixels_with_probed_sizes(tmp_path: Path) -> None:
    records = yolo.parse(make_yolo(tmp_path), OPTS).records
    sizes = pl.DataFrame(
        {"image_path": ["images/train/a.jpg", "images/train/b.png"], "width": [64, 32], "height": [48, 32]}
    )
    boxes = yolo.to_pixels(records.join(sizes, on="image_path", how="left", maintain_order="left"))
    assert boxes.select("bbox_x", "bbox_y", "bbox_w", "bbox_h").rows() == [
        (24.0, 12.0, 16.0, 24.0),
        (0.0, 24.0, 32.0, 24.0),
        (0.0, 0.0, 32.0, 32.0),
    ]


def test_dirty_lines_and_files(tmp_path: Path) -> None:
    make_yolo(tmp_path)
    labels = tmp_path / "labels" / "train"
    (labels / "a.txt").write_text(
        "0 0.5 0.5 0.2\n\n7 0.5 0.5 0.2 0.2\n1 0.5 abc 0.2 0.2\n0 0.1 0.2 0.3 0.4 0.5 0.6\n1 nan 0.5 0.1 0.1\n"
    )
    (labels / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no image of that stem
    (labels / "b.txt").write_bytes(b"0 0.5 0.5 \xff\xfe 0.1\n")
    records = yolo.parse(tmp_path, OPTS).records.select(CORE)
    a = records.filter(pl.col("source_file") == "labels/train/a.txt")
    assert a.get_column("record").to_list() == ["1", "3", "4", "5", "6"]  # line numbers, blank line skipped
    assert a.get_column("parse_error").to_list() == [
        "labels/train/a.txt: line 1: expected 5 fields 'class x_center y_center width height', got 4",
        None,
        None,
        "labels/train/a.txt: line 5: expected 5 fields 'class x_center y_center width height', got 7",
        None,
    ]
    assert a.get_column("label").to_list() == ["cat", "7", "dog", "cat", "dog"]  # 7 is no class: label.unknown
    assert a.row(2)[7:] == ("0.5 abc 0.2 0.2", None, 0.5, None, 0.2, 0.2)  # null value, raw kept: bbox.invalid
    assert a.row(4)[7] == "nan 0.5 0.1 0.1"
    ghost = records.filter(pl.col("source_file") == "labels/train/ghost.txt")
    assert ghost.get_column("image_path").to_list() == ["images/train/ghost"]  # image.missing reports it
    broken = records.filter(pl.col("source_file") == "labels/train/b.txt")
    assert broken.height == 1 and broken.item(0, "record") is None
    assert broken.item(0, "parse_error") == "labels/train/b.txt: expected UTF-8 text, got invalid start byte at byte 10"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"data.yaml": "names: ['cat', \"dog\"]\nnc: 2\n"}, (["cat", "dog"], "data.yaml")),
        ({"dataset.yaml": "names:\n- cat\n- dog\n", "classes.txt": "x\n"}, (["cat", "dog"], "dataset.yaml")),
        ({"coco8.yaml": "names:\n  0: cat # a comment\n  1: 'dog, big'\n"}, (["cat", "dog, big"], "coco8.yaml")),
        ({"data.yaml": "train: images/train\n", "obj.names": "cat\ndog\n\n"}, (["cat", "dog"], "obj.names")),
        ({"classes.txt": "cat\ndog\n"}, (["cat", "dog"], "classes.txt")),
        ({"labels/classes.txt": "cat\ndog\n"}, (["cat", "dog"], "labels/classes.txt")),  # LabelImg
    ],
)
def test_class_names_from_each_names_file(
    tmp_path: Path, files: dict[str, str], expected: tuple[list[str], str]
) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    names, source = yolo.class_names(tmp_path)
    assert ([names[k] for k in sorted(names)], source) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nc: 3\nnames: [a, 'b c', \"d\"]  # three\n", {0: "a", 1: "b c", 2: "d"}),
        ("names: ['a',\n  'b']\n", {0: "a", 1: "b"}),
        ("names: {0: a, 2: 'c'}\n", {0: "a", 2: "c"}),
        ("path: x\nnames:\n  0: person\n  1: bicycle\ndownload: |\n  names: [no]\n", {0: "person", 1: "bicycle"}),
        ("names:\n  - 'it''s'\n  - \"#1\"\n", {0: "it's", 1: "#1"}),
        ("nc: 2\n", None),
    ],
)
def test_yaml_names_subset(text: str, expected: dict[int, str] | None) -> None:
    assert yolo.yaml_names(text) == expected


def test_non_contiguous_names_and_labelimg_classes_file_is_not_a_label_file(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("names:\n  0: cat\n  2: dog\n")
    write_jpeg(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("2 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.5 0.5\n")
    (tmp_path / "labels" / "classes.txt").write_text("cat\nbird\ndog\n")
    parsed = yolo.parse(tmp_path, OPTS)
    assert parsed.vocabulary == ("cat", "dog")
    assert parsed.records.select("source_file", "image_path", "split", "label").rows() == [
        ("labels/a.txt", "images/a.jpg", None, "dog"),
        ("labels/a.txt", "images/a.jpg", None, "1"),
    ]


def test_roboflow_layout_and_images_without_labels_are_orphans(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("names: ['cat']\n")
    for split in ("train", "valid", "test"):
        write_jpeg(tmp_path / split / "images" / "x.jpg")
        write_jpeg(tmp_path / split / "images" / "bg.jpg")
        (tmp_path / split / "labels").mkdir(parents=True)
        (tmp_path / split / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert yolo.detect(tmp_path)
    parsed = yolo.parse(tmp_path, OPTS)
    assert parsed.records.select("image_path", "split").rows() == [
        ("test/images/x.jpg", "test"),
        ("train/images/x.jpg", "train"),
        ("valid/images/x.jpg", "val"),
    ]
    assert parsed.orphans.get_column("image_path").to_list() == [
        "test/images/bg.jpg",
        "train/images/bg.jpg",
        "valid/images/bg.jpg",
    ]


def test_ultralytics_test_folders_are_the_test_split(tmp_path: Path) -> None:
    held_out = add_test_part("yolo", make_yolo(tmp_path))
    records = yolo.parse(tmp_path, OPTS).records
    assert records.filter(pl.col("split") == "test").select(CORE).rows() == [
        ("labels/test/d.txt", "1", held_out[0], held_out[0], "test", "cat", None, None, None, 0.5, 0.5, 0.25, 0.5),
        ("labels/test/d.txt", "2", held_out[1], held_out[1], "test", "dog", None, None, None, 0.25, 0.25, 0.2, 0.2),
        ("labels/test/e.txt", "1", held_out[2], held_out[2], "test", "dog", None, None, None, 0.5, 0.5, 0.5, 0.5),
    ]
    assert records.get_column("split").value_counts().sort("split").rows() == [("test", 3), ("train", 3)]


def test_labels_without_a_names_file_are_not_detected(tmp_path: Path) -> None:
    make_yolo(tmp_path)
    (tmp_path / "data.yaml").unlink()
    assert not yolo.detect(tmp_path)
    parsed = yolo.parse(tmp_path, OPTS)
    assert parsed.vocabulary is None and parsed.records.get_column("label").to_list() == ["1", "0", "0"]


def test_process_pool_gives_the_same_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_yolo(tmp_path)
    serial = yolo.parse(tmp_path, OPTS)
    monkeypatch.setattr(yolo, "_POOL_MIN_FILES", 0)
    pooled = yolo.parse(tmp_path, SourceOptions(workers=2))
    assert pooled.records.equals(serial.records) and pooled.orphans.equals(serial.orphans)


def test_no_label_files_is_a_usage_error(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    with pytest.raises(ValueError, match="expected YOLO label files"):
        yolo.parse(tmp_path, OPTS)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_detect_accepts_only_its_own_layout(tmp_path: Path, layout: str) -> None:
    assert yolo.detect(LAYOUTS[layout](tmp_path)) is (layout == "yolo")
