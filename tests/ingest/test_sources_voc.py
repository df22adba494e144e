"""Pascal VOC XML -> RECORDS, on real XML files and JPEGs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _fixtures_formats import LAYOUTS, add_test_part, make_voc, voc_object, voc_xml, write_jpeg

from pawpipe.common.contracts.ingest_tables import RECORDS
from pawpipe.ingest.sources import SourceOptions, voc

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
    "difficult",
    "truncated",
]


def test_parses_devkit_layout_into_exact_records(tmp_path: Path) -> None:
    parsed = voc.parse(make_voc(tmp_path), OPTS)
    a, b = "Annotations/2007_000001.xml", "Annotations/2007_000002.xml"
    ia, ib = "JPEGImages/2007_000001.jpg", "JPEGImages/2007_000002.jpg"
    assert parsed.records.columns == [*RECORDS.names, "difficult", "truncated"]
    # 1-based inclusive corners -> 0-based x, y, w, h: (1, 1, 10, 20) covers pixels 0..9 x 0..19.
    assert parsed.records.select(CORE).rows() == [
        (a, "1", ia, ia, "train", "dog", 0.0, 0.0, 10.0, 20.0, None, 64, 48, None, 0, 0),
        (a, "2", ia, ia, "train", "cat", 4.0, 5.0, 36.0, 42.0, None, 64, 48, None, 1, 1),
        (b, "1", ib, ib, "val", "cat", 1.0, 2.0, 30.0, 30.0, None, 32, 32, None, 0, 0),
    ]
    assert parsed.extra_columns == ["difficult", "truncated"]
    assert parsed.vocabulary is None
    assert parsed.orphans.is_empty()


def test_xml_that_does_not_parse_is_exactly_one_record(tmp_path: Path) -> None:
    make_voc(tmp_path)
    (tmp_path / "Annotations" / "bad.xml").write_text(
        "<annotation>\n<filename>x.jpg</filename>\n<object><name>cat</object>\n</annotation>\n"
    )
    records = voc.parse(tmp_path, OPTS).records
    bad = records.filter(records["source_file"] == "Annotations/bad.xml")
    assert bad.height == 1
    assert bad.item(0, "record") is None and bad.item(0, "image_path") is None
    assert re.fullmatch(
        r"Annotations/bad\.xml: XML does not parse: mismatched tag: line 3, column \d+", bad.item(0, "parse_error")
    )
    assert records.filter(records["parse_error"].is_null()).height == 3


def test_dirty_objects_keep_the_raw_box_and_flag_the_file(tmp_path: Path) -> None:
    ann = tmp_path / "Annotations"
    ann.mkdir()
    objects = [
        voc_object("cat", ("abc", 2, "12.5", 20)),
        "<object><name>dog</name></object>",  # no box at all
        "<object><name></name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox></object>",
    ]
    (ann / "a.xml").write_text(voc_xml("a.jpg", objects, size=None))
    (ann / "b.xml").write_text(voc_xml("b.jpg", [voc_object("cat", (1, 1, 2, 2))], size=(0, 0)))
    (ann / "empty.xml").write_text(voc_xml("empty.jpg", []))
    (ann / "nofile.xml").write_text("<annotation><object><name>cat</name></object></annotation>")
    (ann / "other.xml").write_text("<config><x>1</x></config>")
    parsed = voc.parse(tmp_path, OPTS)
    rows = parsed.records.select(CORE).rows()
    assert rows[:3] == [
        (
            "Annotations/a.xml",
            "1",
            "JPEGImages/a.jpg",
            "JPEGImages/a.jpg",
            None,
            "cat",
            None,
            1.0,
            None,
            19.0,
            "<bndbox><xmin>abc</xmin><ymin>2</ymin><xmax>12.5</xmax><ymax>20</ymax></bndbox>",
            None,
            None,
            None,
            0,
            0,
        ),
        (
            "Annotations/a.xml",
            "2",
            "JPEGImages/a.jpg",
            "JPEGImages/a.jpg",
            None,
            "dog",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
        (
            "Annotations/a.xml",
            "3",
            "JPEGImages/a.jpg",
            "JPEGImages/a.jpg",
            None,
            "",
            0.0,
            0.0,
            5.0,
            None,
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox>",
            None,
            None,
            None,
            None,
            None,
        ),
    ]
    assert rows[3][11:13] == (None, None)  # <size> of 0 claims nothing
    assert [r[13] for r in rows[4:]] == [
        "Annotations/nofile.xml: expected field 'filename' (the image file name), got nothing",
        "Annotations/other.xml: expected root element <annotation>, got <config>",
    ]
    assert [r[1] for r in rows[4:]] == [None, None]
    assert parsed.orphans.rows() == [("JPEGImages/empty.jpg", "JPEGImages/empty.jpg")]


def test_paths_pass_through_unresolved(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(voc_xml("../../etc/passwd", [voc_object("cat", (1, 1, 2, 2))]))
    (tmp_path / "Annotations" / "b.xml").write_text(voc_xml("sub\\b.jpg", [voc_object("cat", (1, 1, 2, 2))]))
    paths = voc.parse(tmp_path, OPTS).records.get_column("image_path").to_list()
    assert paths == ["JPEGImages/../../etc/passwd", "JPEGImages/sub/b.jpg"]


def test_labelimg_folders_pair_each_xml_with_the_image_beside_it(tmp_path: Path) -> None:
    for split in ("train", "valid"):
        write_jpeg(tmp_path / split / "x.jpg")
        (tmp_path / split / "x.xml").write_text(voc_xml("x.jpg", [voc_object("cat", (11, 21, 30, 40))]))
    (tmp_path / "settings.xml").write_text("<settings/>")  # an XML that is not an annotation is ignored
    assert voc.detect(tmp_path)
    records = voc.parse(tmp_path, OPTS).records
    assert records.select("source_file", "image_path", "split", "bbox_x", "bbox_y", "bbox_w", "bbox_h").rows() == [
        ("train/x.xml", "train/x.jpg", "train", 10.0, 20.0, 20.0, 20.0),
        ("valid/x.xml", "valid/x.jpg", "val", 10.0, 20.0, 20.0, 20.0),
    ]


def test_nested_devkit_and_an_id_in_both_split_lists(tmp_path: Path) -> None:
    base = tmp_path / "VOCdevkit" / "VOC2007"
    make_voc(base)
    (base / "ImageSets" / "Main" / "val.txt").write_text("2007_000002\n2007_000001\n")
    assert voc.detect(tmp_path)
    records = voc.parse(tmp_path, OPTS).records
    assert records.select("image_path", "split").unique(maintain_order=True).rows() == [
        ("VOCdevkit/VOC2007/JPEGImages/2007_000001.jpg", None),  # listed in train.txt and val.txt
        ("VOCdevkit/VOC2007/JPEGImages/2007_000002.jpg", "val"),
    ]


def test_test_txt_is_the_test_split_and_wins_over_another_list(tmp_path: Path) -> None:
    held_out = add_test_part("voc", make_voc(tmp_path))
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_text(
        "2007_000003\n2007_000004\n2007_000001\n"
    )  # 000001 is in train.txt too
    records = voc.parse(tmp_path, OPTS).records
    assert records.select("image_path", "split").rows() == [
        ("JPEGImages/2007_000001.jpg", "test"),
        ("JPEGImages/2007_000001.jpg", "test"),
        ("JPEGImages/2007_000002.jpg", "val"),
        (held_out[0], "test"),
        (held_out[1], "test"),
        (held_out[2], "test"),
    ]


def test_process_pool_gives_the_same_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_voc(tmp_path)
    serial = voc.parse(tmp_path, OPTS)
    monkeypatch.setattr(voc, "_POOL_MIN_FILES", 0)
    pooled = voc.parse(tmp_path, SourceOptions(workers=2))
    assert pooled.records.equals(serial.records) and pooled.orphans.equals(serial.orphans)


def test_no_voc_xml_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    with pytest.raises(ValueError, match="expected VOC XML files"):
        voc.parse(tmp_path, OPTS)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_detect_accepts_only_its_own_layout(tmp_path: Path, layout: str) -> None:
    assert voc.detect(LAYOUTS[layout](tmp_path)) is (layout == "voc")
