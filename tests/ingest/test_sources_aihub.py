"""The AI Hub pet-video layout, on real label files and frames."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pawpipe.ingest.sources import SourceOptions, detect_format
from pawpipe.ingest.sources.aihub import EMOTIONS, detect, parse

LABEL = "Training/라벨링데이터/CAT/ARCH/v1.mp4.json"
FRAMES = "Training/원천데이터/CAT/ARCH/v1.mp4"


def write_video(root: Path, doc: dict | str, frames: list[str]) -> None:
    (root / LABEL).parent.mkdir(parents=True, exist_ok=True)
    (root / LABEL).write_text(doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False))
    (root / FRAMES).mkdir(parents=True, exist_ok=True)
    for name in frames:
        (root / FRAMES / name).write_bytes(b"\xff\xd8")


DOC = {
    "file_video": "v1.mp4",
    "metadata": {
        "species": "CAT",
        "action": "아치",
        "width": 1280,
        "height": 720,
        "animal": {"breed": "코리안 숏헤어"},
        "owner": {"emotion": "편안/안정"},
        "inspect": {"emotion": "행복/즐거움"},
    },
    "annotations": [
        {
            "frame_number": 0,
            "timestamp": 0,
            "bounding_box": {"x": -4, "y": 10, "width": 300, "height": 200},
            "keypoints": {"1": {"x": 1, "y": 2}, "2": None},
        },
        {"frame_number": 6, "timestamp": 200.5, "bounding_box": {"x": 1, "y": "2", "width": 3, "height": None}},
        {"timestamp": 9},
    ],
}


def test_records_columns_and_values(tmp_path) -> None:
    write_video(tmp_path, DOC, ["frame_0_timestamp_0.jpg", "frame_3_timestamp_100.jpg"])
    parsed = parse(tmp_path, SourceOptions(workers=1))
    rec = parsed.records.sort("frame_number", nulls_last=True)
    assert rec.height == 3
    first = rec.row(0, named=True)
    assert first["image_path"] == f"{FRAMES}/frame_0_timestamp_0.jpg"
    assert (first["bbox_x"], first["bbox_y"], first["bbox_w"], first["bbox_h"]) == (-4.0, 10.0, 300.0, 200.0)
    assert (first["group_id"], first["split"], first["label"]) == ("v1.mp4", "train", "행복/즐거움")
    assert (first["owner_emotion"], first["meta_width"], first["keypoints_visible"]) == ("편안/안정", 1280, 1)
    second = rec.row(1, named=True)  # no JPEG on disk: the expected name, for image.missing
    assert second["image_path"] == f"{FRAMES}/frame_6_timestamp_200.5.jpg"
    assert second["bbox_y"] is None and second["bbox_h"] is None and '"y": "2"' in second["bbox_raw"]
    third = rec.row(2, named=True)
    assert third["record"] == "2" and "expected field 'frame_number' (integer), got None" in third["parse_error"]
    assert parsed.orphans.get_column("image_path").to_list() == [f"{FRAMES}/frame_3_timestamp_100.jpg"]
    assert parsed.vocabulary == EMOTIONS


@pytest.mark.parametrize("field, want", [("owner.emotion", "편안/안정"), ("action", "ARCH"), ("species", "CAT")])
def test_label_field_choice(tmp_path, field, want) -> None:
    write_video(tmp_path, DOC, [])
    parsed = parse(tmp_path, SourceOptions(label=field, workers=1))
    assert parsed.records.get_column("label").drop_nulls().unique().to_list() == [want]


def test_unparseable_file_is_one_record_and_its_frames_orphans(tmp_path) -> None:
    write_video(tmp_path, '{"metadata": {', ["frame_0_timestamp_0.jpg"])
    parsed = parse(tmp_path, SourceOptions(workers=1))
    row = parsed.records.row(0, named=True)
    assert parsed.records.height == 1 and row["record"] is None
    assert row["parse_error"].startswith(f"{LABEL}: JSON does not parse: ")
    assert parsed.orphans.height == 1


def test_unknown_label_field_is_a_clear_error(tmp_path) -> None:
    write_video(tmp_path, DOC, [])
    with pytest.raises(ValueError, match="--label for aihub: expected one of"):
        parse(tmp_path, SourceOptions(label="mood"))


def test_detect(tmp_path, demo_raw) -> None:
    assert detect(demo_raw) and detect_format(demo_raw) == "aihub"
    assert not detect(tmp_path)


def test_pool_and_serial_parse_agree(demo_raw) -> None:
    one = parse(demo_raw, SourceOptions(workers=1)).records
    two = parse(demo_raw, SourceOptions(workers=2)).records
    assert one.equals(two)
    assert (
        one.filter(pl.col("parse_error").is_null())
        .get_column("label")
        .drop_nulls()
        .is_in(list(EMOTIONS) + ["몰라"])
        .all()
    )


def test_typed_fast_path_equals_lenient_path(demo_raw, monkeypatch) -> None:
    import msgspec

    import pawpipe.ingest.sources.aihub as aihub

    fast = parse(demo_raw, SourceOptions(workers=1)).records

    class Refuse:
        def decode(self, data):
            raise msgspec.ValidationError("force the lenient path")

    monkeypatch.setattr(aihub, "_DECODER", Refuse())
    lenient = parse(demo_raw, SourceOptions(workers=1)).records
    assert fast.equals(lenient)
