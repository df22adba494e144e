"""Hostile label and image files: each one becomes quarantine rows under a rule, and the run goes on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from pawpipe.ingest.clean import CleanAborted, clean
from pawpipe.ingest.config import CleanConfig

GOOD = "Training/라벨링데이터/CAT/ARCH/good.mp4.json"
GOOD_FRAMES = "Training/원천데이터/CAT/ARCH/good.mp4"
BAD = "Training/라벨링데이터/CAT/ARCH/bad.mp4.json"
BAD_FRAMES = "Training/원천데이터/CAT/ARCH/bad.mp4"


def _doc(*, width: object = 64, frames: tuple = (0, 1), box: dict | None = None) -> dict:
    return {
        "metadata": {"species": "CAT", "width": width, "height": 48, "inspect": {"emotion": "행복/즐거움"}},
        "annotations": [
            {
                "frame_number": n,
                "timestamp": n * 200,
                "bounding_box": box or {"x": 4, "y": 4, "width": 40, "height": 30},
            }
            for n in frames
        ],
    }


def _jpeg(path: Path, size: tuple[int, int] = (64, 48), shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 100, 200 - shade)).save(path, "JPEG")


def _root(tmp_path: Path) -> Path:
    """A root with one good video (two frames) and the bad video's frames; the test writes the bad label file."""
    root = tmp_path / "raw"
    for name, frames, shade in ((GOOD, GOOD_FRAMES, 0), (BAD, BAD_FRAMES, 90)):
        for n in (0, 1):
            _jpeg(root / frames / f"frame_{n}_timestamp_{n * 200}.jpg", shade=shade + n * 30)
    (root / GOOD).parent.mkdir(parents=True, exist_ok=True)
    (root / GOOD).write_text(json.dumps(_doc(), ensure_ascii=False))
    return root


def _clean(root: Path, tmp_path: Path, **kw) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = tmp_path / "out"
    clean(CleanConfig(root=root, out=out, workers=1, quiet=True, max_quarantine_fraction=1.0, **kw))
    return pl.read_parquet(out / "manifest.parquet"), pl.read_parquet(out / "quarantine.parquet")


def _nothing_clean(root: Path, tmp_path: Path, **kw) -> pl.DataFrame:
    """Every record quarantined: the run stops (an empty manifest is never a success); the quarantine is written."""
    out = tmp_path / "out"
    with pytest.raises(CleanAborted, match="all 1 records quarantined"):
        clean(CleanConfig(root=root, out=out, workers=1, quiet=True, max_quarantine_fraction=1.0, **kw))
    assert not (out / "manifest.parquet").exists()
    return pl.read_parquet(out / "quarantine.parquet")


def _good_kept(manifest: pl.DataFrame) -> None:
    assert sorted(manifest.filter(pl.col("group_id") == "good.mp4").get_column("record").to_list()) == ["0", "1"]


def _rows(quarantine: pl.DataFrame, source_file: str) -> list[tuple]:
    rows = quarantine.filter(pl.col("source_file") == source_file)
    return [(r["rule"], r["detail"]) for r in rows.iter_rows(named=True)]


def test_deeply_nested_json_is_one_malformed_row(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text('{"metadata": ' + "[" * 100_000 + "]" * 100_000 + ', "annotations": []}')
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["annotation.malformed"] and "nested too deeply" in detail


def test_huge_metadata_width_is_one_malformed_row(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc(width=1e308)))
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["annotation.malformed"] and "'metadata.width'" in detail and "1e+308" in detail


def test_huge_frame_number_is_one_malformed_row(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc(frames=(0, 10**23))))
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    assert manifest.filter(pl.col("group_id") == "bad.mp4").get_column("record").to_list() == ["0"]
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["annotation.malformed"] and "annotations[1]" in detail and str(10**23) in detail


def test_fifo_label_file_is_refused_without_opening(tmp_path) -> None:
    root = _root(tmp_path)
    os.mkfifo(root / BAD)  # opening it would block forever
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["path.not_regular"] and "FIFO" in detail


def test_fifo_image_is_refused_without_opening(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc()))
    frame = root / BAD_FRAMES / "frame_1_timestamp_200.jpg"
    frame.unlink()
    os.mkfifo(frame)
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["path.not_regular"] and "FIFO" in detail and "frame_1_timestamp_200.jpg" in detail


def test_label_file_symlinked_from_outside_the_root_is_refused(tmp_path) -> None:
    root = _root(tmp_path)
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps(_doc()))
    (root / BAD).symlink_to(outside)
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    assert manifest.filter(pl.col("group_id") == "bad.mp4").is_empty()
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["path.outside_root"] and "secret.json" not in detail


def test_non_utf8_label_file_name_is_quarantined_by_name(tmp_path) -> None:
    root = _root(tmp_path)
    folder = os.fsencode(root / BAD).rsplit(b"/", 1)[0]
    with open(folder + b"/bad\xff.mp4.json", "wb") as handle:
        handle.write(json.dumps(_doc()).encode())
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, "Training/라벨링데이터/CAT/ARCH/bad\\xff.mp4.json")
    assert rule == ["path.bad_name"] and "not valid UTF-8" in detail


def test_non_utf8_frame_name_is_quarantined_by_name(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc()))
    frame = os.fsencode(root / BAD_FRAMES / "frame_1_timestamp_200.jpg")
    os.rename(frame, frame.replace(b"timestamp_200", b"timestamp_\xff200"))
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["path.bad_name"] and "frame_1_timestamp_\\xff200.jpg" in detail


def test_frame_name_ending_in_newline_is_quarantined(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc()))
    frame = root / BAD_FRAMES / "frame_1_timestamp_200.jpg"
    frame.rename(frame.with_name(frame.name + "\n"))
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["path.bad_name"] and "frame_1_timestamp_200.jpg\\n'" in detail and "control character" in detail


def test_exact_duplicate_records_in_one_file(tmp_path) -> None:
    root = _root(tmp_path)
    doc = _doc()
    doc["annotations"].append(dict(doc["annotations"][1]))
    (root / BAD).write_text(json.dumps(doc))
    manifest, quarantine = _clean(root, tmp_path)
    assert sorted(manifest.filter(pl.col("group_id") == "bad.mp4").get_column("record").to_list()) == ["0", "1"]
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["annotation.duplicate"] and "record '1'" in detail


def test_label_file_over_the_size_limit(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps({**_doc(), "note": "x" * 500}))
    limit = (root / GOOD).stat().st_size
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[rules."annotation.too_large"]\nmax_bytes = {limit}\n')
    manifest, quarantine = _clean(root, tmp_path, rules=rules)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["annotation.too_large"] and f"at most {limit} bytes" in detail


def test_huge_label_string_is_quarantined_and_the_report_stays_small(tmp_path) -> None:
    root = _root(tmp_path)
    doc = _doc()
    doc["metadata"]["inspect"]["emotion"] = "x" * 2_000_000
    (root / BAD).write_text(json.dumps(doc))
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    rows = _rows(quarantine, BAD)
    assert [rule for rule, _ in rows] == [["annotation.field_too_long", "label.unknown"]] * 2
    assert all("field 'label'" in detail and len(detail) < 1000 for _, detail in rows)
    assert (tmp_path / "out" / "report.json").stat().st_size < 100_000
    assert (tmp_path / "out" / "report.html").stat().st_size < 200_000


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc()))
    big = root / BAD_FRAMES / "frame_1_timestamp_200.jpg"
    Image.new("L", (4200, 4200)).save(big.with_suffix(".png"), "PNG")  # about 17.6 Mpx, a few KB
    big.unlink()
    big.with_suffix(".png").rename(big)
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["image.too_large"] and "4200x4200" in detail


@pytest.mark.parametrize("switch", ["enabled = false", 'action = "off"'])
def test_a_rule_can_be_switched_off(tmp_path, switch) -> None:
    root = _root(tmp_path)
    doc = _doc()
    doc["annotations"].append(dict(doc["annotations"][1]))
    (root / BAD).write_text(json.dumps(doc))
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[rules."annotation.duplicate"]\n{switch}\n')
    manifest, quarantine = _clean(root, tmp_path, rules=rules)
    assert sorted(manifest.filter(pl.col("group_id") == "bad.mp4").get_column("record").to_list()) == ["0", "1", "1"]
    assert quarantine.is_empty()


def test_coco_hostile_numbers_and_nesting_do_not_stop_the_run(tmp_path) -> None:
    root = tmp_path / "coco"
    _jpeg(root / "images" / "a.jpg")
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 1e308, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 40, 30], "iscrowd": 10**23},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10**400, 30]},
        ],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    (root / "annotations" / "instances_deep.json").write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    manifest, quarantine = _clean(root, tmp_path, format="coco")
    assert manifest.get_column("record").to_list() == ["1"]
    rows = {r["record"] or r["source_file"]: (r["rule"], r["detail"]) for r in quarantine.iter_rows(named=True)}
    assert rows["2"][0] == ["bbox.invalid"]
    assert rows["annotations/instances_deep.json"] == (
        ["annotation.malformed"],
        "annotation.malformed: annotations/instances_deep.json: JSON does not parse: nested too deeply",
    )


def test_yolo_fifo_label_file_is_refused(tmp_path) -> None:
    root = tmp_path / "yolo"
    _jpeg(root / "images" / "train" / "a.jpg")
    _jpeg(root / "images" / "train" / "b.jpg", shade=80)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    os.mkfifo(root / "labels" / "train" / "b.txt")
    (root / "data.yaml").write_text("names: ['cat']\n")
    manifest, quarantine = _clean(root, tmp_path, format="yolo")
    assert manifest.get_column("source_file").to_list() == ["labels/train/a.txt"]
    assert quarantine.select("source_file", "rule").rows() == [("labels/train/b.txt", ["path.not_regular"])]


def test_lone_surrogate_escape_in_json_is_one_malformed_row(tmp_path) -> None:
    root = _root(tmp_path)
    text = json.dumps(_doc()).replace('"CAT"', '"\\ud800CAT"')
    (root / BAD).write_text(text.replace('"x": 4', '"x": NaN', 1))  # NaN: the lenient parser's path
    manifest, quarantine = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["annotation.malformed"] and "not valid Unicode" in detail


def test_yolo_image_names_that_are_not_utf8(tmp_path) -> None:
    root = tmp_path / "yolo"
    _jpeg(root / "images" / "train" / "a.jpg")
    with open(os.fsencode(root / "images" / "train") + b"/b\xff.jpg", "wb") as handle:
        handle.write((root / "images" / "train" / "a.jpg").read_bytes())
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: ['cat']\n")
    manifest, _ = _clean(root, tmp_path, format="yolo")
    assert manifest.get_column("image_path").to_list() == ["images/train/a.jpg"]
    orphans = pl.read_parquet(tmp_path / "out" / "orphans.parquet")
    assert orphans.get_column("image_path").to_list() == ["images/train/b\\xff.jpg"]


def test_a_table_symlinked_from_outside_the_root_is_refused(tmp_path) -> None:
    root = tmp_path / "table"
    _jpeg(root / "images" / "a.jpg")
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("image,label,x,y,w,h\nimages/a.jpg,cat,4,4,40,30\n")
    root.joinpath("boxes.csv").symlink_to(outside)
    quarantine = _nothing_clean(root, tmp_path, format="table", annotations="boxes.csv")
    assert quarantine.select("source_file", "rule").rows() == [("boxes.csv", ["path.outside_root"])]


def test_an_image_named_with_a_newline_by_an_annotation_is_refused(tmp_path) -> None:
    root = tmp_path / "coco"
    _jpeg(root / "images" / "a.jpg\n")
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg\n", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 40, 30]}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    quarantine = _nothing_clean(root, tmp_path, format="coco")
    [row] = quarantine.iter_rows(named=True)
    assert (
        row["rule"] == ["path.bad_name"] and "images/a.jpg\\n" in row["detail"] and "control character" in row["detail"]
    )
