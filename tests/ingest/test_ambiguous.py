"""Ambiguous or contradictory inputs are never resolved in silence: their records are quarantined under a
rule with a detail that names the key, id or folder, or the run stops with one line naming the file."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import polars as pl
import pytest
from _fixtures_formats import coco_doc, write_jpeg, write_json
from PIL import Image
from test_hostile import BAD, BAD_FRAMES, _doc, _good_kept, _root, _rows

from pawpipe.ingest.clean import CleanAborted, clean
from pawpipe.ingest.config import CleanConfig

INGEST = str(Path(sys.executable).with_name("ingest"))


def _clean(root: Path, tmp_path: Path, **kw) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    out = tmp_path / "out"
    clean(CleanConfig(root=root, out=out, workers=1, quiet=True, max_quarantine_fraction=1.0, **kw))
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return pl.read_parquet(out / "manifest.parquet"), pl.read_parquet(out / "quarantine.parquet"), report


def _without_root_powers(argv: list[str]) -> list[str]:
    """``argv`` run so that file modes bind (root reads a mode-000 folder unless its DAC capabilities go)."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv (util-linux) cannot make a folder it cannot read")
    return [
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
        *argv,
    ]


def _clean_unlisted(root: Path, folder: Path, out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``ingest clean`` (exit 0) while ``folder`` cannot be listed: the manifest and the quarantine."""
    argv = _without_root_powers([INGEST, "clean", str(root), "--out", str(out), "--workers", "1", "--quiet"])
    folder.chmod(0)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    return pl.read_parquet(out / "manifest.parquet"), pl.read_parquet(out / "quarantine.parquet")


# -- tables -------------------------------------------------------------------------------------------------


def test_csv_with_cr_only_line_ends_is_read_line_by_line(tmp_path) -> None:
    root = tmp_path / "table"
    for name in ("a", "b", "c"):
        write_jpeg(root / "images" / f"{name}.jpg")
    # The box columns come before a last column: read as one header row, every box column was still "found".
    rows = "".join(
        f"images/{n}.jpg,{label},4,4,30,20,seen\r" for n, label in (("a", "cat"), ("b", "dog"), ("c", "cat"))
    )
    (root / "boxes.csv").write_bytes(("image_path,label,x,y,w,h,note\r" + rows).encode())
    manifest, quarantine, report = _clean(root, tmp_path)
    assert sorted(manifest.select("image_path", "label").rows()) == [
        ("images/a.jpg", "cat"),
        ("images/b.jpg", "dog"),
        ("images/c.jpg", "cat"),
    ]
    assert quarantine.is_empty() and report["source_notes"]["line_ends"] == "CR"


def test_a_table_with_no_rows_is_never_a_success(tmp_path) -> None:
    root = tmp_path / "table"
    write_jpeg(root / "images" / "a.jpg")
    (root / "boxes.csv").write_text("image_path,label,x,y,w,h\n")
    with pytest.raises(
        CleanAborted, match=r"no annotation records found \(read table: boxes.csv\); manifest not written"
    ):
        clean(CleanConfig(root=root, out=tmp_path / "out", workers=1, quiet=True))
    assert not (tmp_path / "out" / "manifest.parquet").exists()
    assert (tmp_path / "out" / "report.html").exists()


def test_one_image_under_several_spellings_is_one_sample(tmp_path) -> None:
    root = tmp_path / "table"
    write_jpeg(root / "images" / "a.jpg")
    write_jpeg(root / "images" / "b.jpg")
    pl.DataFrame(
        {
            "image_path": ["images/a.jpg", "./images/a.jpg", "images//a.jpg", "images/./a.jpg", "images/b.jpg"],
            "label": ["cat"] * 4 + ["dog"],
            "x": [4] * 5,
            "y": [4] * 5,
            "w": [30] * 5,
            "h": [20] * 5,
        }
    ).write_csv(root / "boxes.csv")
    manifest, quarantine, _ = _clean(root, tmp_path)
    assert sorted(manifest.get_column("image_path").to_list()) == ["images/a.jpg", "images/b.jpg"]
    assert quarantine.select("record", "image_path", pl.col("rule").list.first()).sort("record").rows() == [
        ("2", "images/a.jpg", "annotation.duplicate"),
        ("3", "images/a.jpg", "annotation.duplicate"),
        ("4", "images/a.jpg", "annotation.duplicate"),
    ]


# -- folders the OS will not list ------------------------------------------------------------------------------


def test_an_unreadable_label_folder_is_quarantined_by_name_and_the_run_goes_on(tmp_path) -> None:
    root = _root(tmp_path)
    other = root / "Training/라벨링데이터/DOG/SIT"
    other.mkdir(parents=True)
    (other / "dog.mp4.json").write_text(json.dumps(_doc(), ensure_ascii=False))
    manifest, quarantine = _clean_unlisted(root, other, tmp_path / "out")
    assert _rows(quarantine, "Training/라벨링데이터/DOG/SIT/") == [
        (
            ["annotation.malformed"],
            "annotation.malformed: Training/라벨링데이터/DOG/SIT/: cannot list the folder (Permission denied); the "
            "files in it were not read",
        )
    ]
    _good_kept(manifest)


def test_an_unreadable_frame_folder_quarantines_its_video_and_the_run_goes_on(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc(), ensure_ascii=False))
    manifest, quarantine = _clean_unlisted(root, root / BAD_FRAMES, tmp_path / "out")
    assert _rows(quarantine, BAD) == [
        (
            ["annotation.malformed"],
            f"annotation.malformed: {BAD}: cannot list its frame folder {BAD_FRAMES} (Permission denied); its frames "
            "were not read",
        )
    ]
    _good_kept(manifest)


def test_an_unreadable_yolo_label_folder_is_quarantined_by_name(tmp_path) -> None:
    root = tmp_path / "yolo"
    root.mkdir()
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    for split in ("train", "val"):
        write_jpeg(root / "images" / split / f"{split}.jpg")
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / f"{split}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    manifest, quarantine = _clean_unlisted(root, root / "labels" / "val", tmp_path / "out")
    assert _rows(quarantine, "labels/val/") == [
        (
            ["annotation.malformed"],
            "annotation.malformed: labels/val/: cannot list the folder (Permission denied); the files in it were "
            "not read",
        )
    ]
    assert manifest.get_column("image_path").to_list() == ["images/train/train.jpg"]


# -- keys and ids written twice --------------------------------------------------------------------------------


def test_an_aihub_file_naming_annotations_twice_is_quarantined_naming_the_key(tmp_path) -> None:
    root = _root(tmp_path)
    doc = json.dumps(_doc(frames=(0,)), ensure_ascii=False)
    second = json.dumps(_doc(frames=(1,))["annotations"])
    (root / BAD).write_text(doc[:-1] + f', "annotations": {second}}}')  # two frames, one per 'annotations'
    manifest, quarantine, _ = _clean(root, tmp_path)
    _good_kept(manifest)
    [(rule, detail)] = _rows(quarantine, BAD)
    assert rule == ["annotation.malformed"]
    assert (
        detail
        == f"annotation.malformed: {BAD}: expected each key once per object, got 'annotations' twice (JSON readers "
        "keep the last: ambiguous)"
    )


def _coco(root: Path, doc: dict) -> None:
    for img in doc["images"]:
        write_jpeg(root / "images" / img["file_name"])
    write_json(root / "annotations" / "instances_default.json", doc)


def _box(ident: int, image_id: int, category_id: int) -> dict:
    return {"id": ident, "image_id": image_id, "category_id": category_id, "bbox": [4, 4, 30, 20]}


def test_coco_image_id_written_twice_quarantines_the_boxes_that_name_it(tmp_path) -> None:
    root = tmp_path / "coco"
    doc = coco_doc(
        [(1, "a.jpg", 64, 48), (1, "b.jpg", 64, 48), (2, "c.jpg", 64, 48), (2, "c.jpg", 64, 48)],
        [_box(10, 1, 1), _box(11, 2, 1), _box(12, 2, 2)],
        {1: "cat", 2: "dog"},
    )
    _coco(root, doc)
    manifest, quarantine, _ = _clean(root, tmp_path)
    # Image 2 is written twice alike: not ambiguous. Image 1 names two files: its box could belong to either.
    assert sorted(manifest.select("record", "image_path").rows()) == [("11", "images/c.jpg"), ("12", "images/c.jpg")]
    [row] = quarantine.iter_rows(named=True)
    assert (row["record"], row["rule"]) == ("10", ["annotation.malformed"])
    assert (
        row["detail"]
        == "annotation.malformed: annotations/instances_default.json: annotation 10: image_id 1 names 2 entries "
        '("images/a.jpg", "images/b.jpg") in images[]: ambiguous'
    )


def test_coco_category_id_written_twice_quarantines_its_boxes(tmp_path) -> None:
    root = tmp_path / "coco"
    doc = coco_doc([(1, "a.jpg", 64, 48)], [_box(10, 1, 1), _box(11, 1, 2)], {1: "cat", 2: "dog"})
    doc["categories"].append({"id": 1, "name": "fox", "supercategory": "animal"})
    _coco(root, doc)
    manifest, quarantine, _ = _clean(root, tmp_path)
    assert manifest.select("record", "label").rows() == [("11", "dog")]
    [row] = quarantine.iter_rows(named=True)
    assert (
        row["detail"]
        == "annotation.malformed: annotations/instances_default.json: annotation 10: category_id 1 names 2 entries "
        '("cat", "fox") in categories[]: ambiguous'
    )


def test_roboflow_placeholder_category_is_no_class(tmp_path) -> None:
    root = tmp_path / "coco"
    doc = coco_doc([(1, "a.jpg", 64, 48), (2, "b.jpg", 64, 48)], [_box(10, 1, 1), _box(11, 2, 2)], {})
    doc["categories"] = [
        {"id": 0, "name": "pets", "supercategory": "none"},
        {"id": 1, "name": "cat", "supercategory": "pets"},
        {"id": 2, "name": "dog", "supercategory": "pets"},
    ]
    _coco(root, doc)
    manifest, _, report = _clean(root, tmp_path)
    assert json.loads((tmp_path / "out" / "labels.json").read_text())["vocabulary"] == ["cat", "dog"]
    assert sorted(manifest.select("label", "label_id").rows()) == [("cat", 0), ("dog", 1)]
    assert report["source_notes"]["categories_left_out"] == ["pets (id 0: the supercategory of others, no annotations)"]


def test_coco_file_naming_annotations_twice_is_quarantined_naming_the_key(tmp_path) -> None:
    root = tmp_path / "coco"
    doc = coco_doc([(1, "a.jpg", 64, 48)], [_box(10, 1, 1)], {1: "cat"})
    _coco(root, doc)
    write_jpeg(root / "images" / "b.jpg")
    write_json(
        root / "annotations" / "instances_val.json", coco_doc([(1, "b.jpg", 64, 48)], [_box(10, 1, 1)], {1: "cat"})
    )
    path = root / "annotations" / "instances_default.json"
    text = path.read_text()
    path.write_text(text[:-1] + ', "annotations": []}')
    manifest, quarantine, _ = _clean(root, tmp_path)
    assert _rows(quarantine, "annotations/instances_default.json") == [
        (
            ["annotation.malformed"],
            "annotation.malformed: annotations/instances_default.json: expected each key once per object, "
            "got 'annotations' twice (JSON readers keep the last: ambiguous)",
        )
    ]
    assert manifest.get_column("image_path").to_list() == ["images/b.jpg"]


def _yolo(root: Path, names_yaml: str) -> Path:
    (root / "labels").mkdir(parents=True)
    write_jpeg(root / "images" / "a.jpg")
    write_jpeg(root / "images" / "b.jpg")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "labels" / "b.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text(names_yaml)
    return root


def test_yolo_names_written_twice_stops_the_run_naming_the_lines(tmp_path) -> None:
    root = _yolo(tmp_path / "yolo", "names: [cat, dog]\ntrain: images\nnames: [dog, cat]\n")
    with pytest.raises(
        ValueError, match=r"^data.yaml: expected one 'names:', got 2 \(lines 1, 3\); YAML readers keep the last"
    ):
        clean(CleanConfig(root=root, out=tmp_path / "out", workers=1, quiet=True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "names:\n  0: cat\n  1: dog\n  0: fox\n",
            "data.yaml: expected each class id once under 'names:', got 0 more than once",
        ),
        ("names: [cat, no]\n", "data.yaml: names[1] reads as false (bool), not a class name; quote it"),
    ],
)
def test_yolo_names_that_readers_take_differently_are_refused(tmp_path, text: str, message: str) -> None:
    root = _yolo(tmp_path / "yolo", text)
    with pytest.raises(ValueError) as caught:
        clean(CleanConfig(root=root, out=tmp_path / "out", workers=1, quiet=True))
    assert str(caught.value) == message


def test_yolo_names_through_a_yaml_anchor_are_the_names(tmp_path) -> None:
    root = _yolo(tmp_path / "yolo", "classes: &classes\n  - cat\n  - dog\nnames: *classes\n")
    manifest, _, _ = _clean(root, tmp_path)
    assert sorted(manifest.select("image_path", "label").rows()) == [("images/a.jpg", "cat"), ("images/b.jpg", "dog")]


# -- images ------------------------------------------------------------------------------------------------------


def test_a_jpeg_cut_right_after_its_headers_is_unreadable(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc(), ensure_ascii=False))
    frame = root / BAD_FRAMES / "frame_1_timestamp_200.jpg"
    data = frame.read_bytes()
    sos = data.index(b"\xff\xda")
    frame.write_bytes(
        data[: sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")] + b"\xff\xd9"
    )  # headers, then EOI
    assert Image.open(frame).load() is not None  # Pillow decodes it (a flat grey picture) without a word
    manifest, quarantine, _ = _clean(root, tmp_path)
    _good_kept(manifest)
    rows = quarantine.filter(pl.col("image_path") == f"{BAD_FRAMES}/frame_1_timestamp_200.jpg")
    assert rows.select(pl.col("rule").list.first(), "detail").rows() == [
        (
            "image.unreadable",
            f"image.unreadable: image '{BAD_FRAMES}/frame_1_timestamp_200.jpg': expected a decodable image, got a "
            "JPEG with headers but no image data (cut after its headers)",
        )
    ]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds a few bytes of pixel data: decoding it fails."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = zlib.compress(b"\x00" * 64)[:-4]  # a zlib stream cut short
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's own warning on opening it
def test_a_huge_png_is_refused_from_its_header_before_anything_decodes(tmp_path) -> None:
    root = _root(tmp_path)
    (root / BAD).write_text(json.dumps(_doc(), ensure_ascii=False))
    (root / BAD_FRAMES / "frame_1_timestamp_200.jpg").write_bytes(_png_header_only(13000, 13000))
    with pytest.raises(OSError):  # what decoding (PIL's getexif() loads a PNG) would run into
        Image.open(io.BytesIO(_png_header_only(13000, 13000))).getexif()
    manifest, quarantine, _ = _clean(root, tmp_path)
    _good_kept(manifest)
    rows = quarantine.filter(pl.col("image_path") == f"{BAD_FRAMES}/frame_1_timestamp_200.jpg")
    assert rows.get_column("rule").to_list() == [["image.too_large"]]
    assert rows.get_column("detail")[0].endswith("expected at most 16777216 pixels, got 13000x13000")


# -- frames on another disk --------------------------------------------------------------------------------------


def _linked_table(tmp_path: Path) -> tuple[Path, Path]:
    """A table dataset whose images/ is a symlink to a folder on 'another disk'."""
    elsewhere = tmp_path / "disk2" / "frames"
    for name in ("a", "b", "c", "d"):
        write_jpeg(elsewhere / f"{name}.jpg")
    root = tmp_path / "table"
    root.mkdir()
    (root / "images").symlink_to(elsewhere)
    pl.DataFrame(
        {
            "image_path": [f"images/{n}.jpg" for n in "abcd"],
            "label": ["cat", "dog", "cat", "dog"],
            "x": [4] * 4,
            "y": [4] * 4,
            "w": [30] * 4,
            "h": [20] * 4,
        }
    ).write_csv(root / "boxes.csv")
    return root, elsewhere


def test_symlinked_frames_need_allow_root_and_the_refusal_names_the_rule_and_the_flag(tmp_path) -> None:
    root, elsewhere = _linked_table(tmp_path)
    done = subprocess.run(
        [INGEST, "clean", str(root), "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert (
        "all 4 records quarantined (path.outside_root 4 (symlinks that leave the root: --allow-root DIR admits"
        in done.stderr
    )
    done = subprocess.run(
        [INGEST, "clean", str(root), "--out", str(tmp_path / "out"), "--quiet", "--allow-root", str(elsewhere.parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    manifest = pl.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert sorted(manifest.get_column("image_path").to_list()) == [f"images/{n}.jpg" for n in "abcd"]
    recorded = json.loads((tmp_path / "out" / "clean_config.json").read_text())
    assert recorded["allow_roots"] == [str(elsewhere.parent.resolve())]
    shards = subprocess.run(
        [
            str(Path(sys.executable).with_name("shards")),
            "build",
            str(tmp_path / "out"),
            "--out",
            str(tmp_path / "shards"),
            "--size",
            "32",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shards.returncode == 0, shards.stderr
    written = json.loads((tmp_path / "shards" / "dataset.json").read_text())["counts"]
    assert sum(split["written"] for split in written.values()) == 4


def test_shards_build_refuses_an_empty_manifest(tmp_path) -> None:
    root, elsewhere = _linked_table(tmp_path)
    clean(CleanConfig(root=root, out=tmp_path / "out", workers=1, quiet=True, allow_roots=(elsewhere.parent,)))
    manifest = tmp_path / "out" / "manifest.parquet"
    pl.read_parquet(manifest).head(0).write_parquet(manifest)  # as an older version could leave it: a set of its own
    outputs = json.loads((tmp_path / "out" / "outputs.json").read_text())
    outputs["files"]["manifest.parquet"] = manifest.stat().st_size
    (tmp_path / "out" / "outputs.json").write_text(json.dumps(outputs))
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("shards")),
            "build",
            str(tmp_path / "out"),
            "--out",
            str(tmp_path / "shards"),
            "--size",
            "32",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("manifest.parquet: expected clean samples, got none; see its report.html")
    )
