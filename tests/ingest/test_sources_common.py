"""The checks every annotation source shares (``ingest.sources._common``), and the sources that use them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _fixtures_formats import coco_doc, make_coco, make_voc, voc_object, voc_xml

from pawpipe.ingest.sources import SourceOptions, coco, voc
from pawpipe.ingest.sources._common import (
    ROW_SCHEMA,
    all_finite,
    cannot_read,
    does_not_parse,
    failure,
    failure_row,
    is_int64,
    is_number,
    json_float,
    positive_size,
    text_float,
)

OPTS = SourceOptions(workers=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (640, 640),
        (640.0, 640),
        (2**63 - 1, 2**63 - 1),
        (2**53 + 1, 2**53 + 1),
        (0, None),
        (-4, None),
        (12.5, None),
        (2**63, None),
        (1e30, None),
        (10**400, None),
        (math.inf, None),
        (math.nan, None),
        (True, None),
        ("64", None),
        (None, None),
    ],
)
def test_positive_size(value: object, expected: int | None) -> None:
    assert positive_size(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(4, 4.0), (2.5, 2.5), (10**400, None), (True, None), ("4", None), (None, None), ([4], None)]
)
def test_json_float(value: object, expected: float | None) -> None:
    assert json_float(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("4", 4.0), (" 2.5 ", 2.5), ("1e3", 1000.0), ("abc", None), ("", None), (None, None)]
)
def test_text_float(text: str | None, expected: float | None) -> None:
    assert text_float(text) == expected


def test_number_checks_take_exact_types() -> None:
    assert [is_number(v) for v in (1, 1.5, True, "1", None)] == [True, True, False, False, False]
    assert [is_int64(v) for v in (2**63 - 1, -(2**63), 2**63, 1.0, False)] == [True, True, False, False, False]
    assert text_float("inf") == math.inf and not all_finite(1.0, text_float("inf"))
    assert all_finite(0.0, -1.0, 1e308) and not all_finite(1.0, None) and not all_finite(math.nan)


def test_failure_rows_name_where_and_why_only() -> None:
    assert failure("a.json", "a.json: broken", record="3", rule="path.bad_name") == {
        "source_file": "a.json",
        "record": "3",
        "image_path": None,
        "parse_error": "a.json: broken",
        "parse_rule": "path.bad_name",
    }
    schema = {**ROW_SCHEMA, "iscrowd": None}
    row = failure_row(schema, "a.json", "a.json: broken", record="annotations[2]", split="val")
    assert row == ("a.json", "annotations[2]", None, None, "val", *[None] * 8, "a.json: broken", None)
    assert len(row) == len(schema)


def test_messages() -> None:
    assert (
        does_not_parse("a.json", "JSON", RecursionError("maximum recursion depth"))
        == "a.json: JSON does not parse: nested too deeply"
    )
    assert (
        does_not_parse("a.xml", "XML", ValueError("no element found")) == "a.xml: XML does not parse: no element found"
    )
    assert cannot_read("a.json", PermissionError(13, "Permission denied")) == "a.json: cannot read: Permission denied"


def test_coco_image_size_past_int64_claims_nothing_and_the_run_goes_on(tmp_path: Path) -> None:
    make_coco(tmp_path)
    doc = json.dumps(
        coco_doc(
            [(7, "h.jpg", 50, 40)], [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 2, 30, 20]}], {1: "cat"}
        )
    )
    (tmp_path / "annotations" / "instances_huge2017.json").write_text(
        doc.replace('"width": 50', '"width": 1' + "0" * 400)
    )
    records = coco.parse(tmp_path, OPTS).records
    huge = records.filter(records["source_file"] == "annotations/instances_huge2017.json")
    assert huge.select("record", "meta_width", "meta_height", "parse_error").rows() == [("1", None, 40, None)]


def test_voc_image_size_past_int64_claims_nothing_and_the_run_goes_on(tmp_path: Path) -> None:
    make_voc(tmp_path)
    xml = voc_xml("2007_000001.jpg", [voc_object("cat", (1, 1, 50, 40))], size=("1e30", "40.0"))
    (tmp_path / "Annotations" / "huge.xml").write_text(xml)
    records = voc.parse(tmp_path, OPTS).records
    huge = records.filter(records["source_file"] == "Annotations/huge.xml")
    assert huge.select("record", "meta_width", "meta_height", "parse_error").rows() == [("1", None, 40, None)]
