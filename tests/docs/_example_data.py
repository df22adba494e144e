"""The folders docs/your-data.md shows: the demo's clean frames written in each annotation layout.

Each folder holds real files in the layout a user would bring (COCO download, VOC devkit,
Ultralytics YOLO, one CSV), made from ``demo/clean/manifest.parquet`` and the images under
``demo/raw``, with the emotion labels in English so the pages read plainly.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

ENGLISH = {
    "행복/즐거움": "happy",
    "편안/안정": "relaxed",
    "불안/슬픔": "anxious",
    "화남/불쾌": "angry",
    "공포": "fearful",
    "공격성": "aggressive",
}
LABELS = ("happy", "relaxed", "anxious", "angry", "fearful", "aggressive")


def _frames(workdir: Path) -> pl.DataFrame:
    """The demo's clean rows with a flat file name, an English label and the source image path."""
    manifest = pl.read_parquet(workdir / "demo" / "clean" / "manifest.parquet").sort("image_path")
    video = pl.col("group_id").str.replace(r"\.mp4$", "")
    return manifest.select(
        "split",
        "bbox_x",
        "bbox_y",
        "bbox_w",
        "bbox_h",
        "width",
        "height",
        source=pl.lit(str(workdir / "demo" / "raw") + "/") + pl.col("image_path"),
        name=pl.format("{}_{}.jpg", video, pl.col("frame_number").cast(pl.String).str.zfill(2)),
        video=video,
        label=pl.col("label").replace_strict(ENGLISH),
    )


def _copy(rows: pl.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in rows.select("source", "name").iter_rows():
        shutil.copyfile(source, folder / name)


def make_coco(workdir: Path, root: Path) -> None:
    """COCO download: annotations/instances_{train,val}2017.json, images in train2017/ and val2017/."""
    frames = _frames(workdir)
    categories = [{"id": i, "name": name, "supercategory": "pet"} for i, name in enumerate(LABELS, start=1)]
    ids = {c["name"]: c["id"] for c in categories}
    for split in ("train", "val"):
        rows = frames.filter(pl.col("split") == split)
        _copy(rows, root / f"{split}2017")
        images, annotations = [], []
        for n, row in enumerate(rows.iter_rows(named=True), start=1):
            images.append({"id": n, "file_name": row["name"], "width": row["width"], "height": row["height"]})
            box = [row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]]
            annotations.append(
                {
                    "id": n,
                    "image_id": n,
                    "category_id": ids[row["label"]],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


def make_voc(workdir: Path, root: Path) -> None:
    """VOC devkit: Annotations/*.xml (1-based inclusive corners), JPEGImages/, ImageSets/Main/{train,val}.txt."""
    frames = _frames(workdir)
    _copy(frames, root / "JPEGImages")
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for row in frames.iter_rows(named=True):
        doc = ET.Element("annotation")
        ET.SubElement(doc, "folder").text = "JPEGImages"
        ET.SubElement(doc, "filename").text = row["name"]
        size = ET.SubElement(doc, "size")
        for key, value in (("width", row["width"]), ("height", row["height"]), ("depth", 3)):
            ET.SubElement(size, key).text = str(value)
        obj = ET.SubElement(doc, "object")
        ET.SubElement(obj, "name").text = row["label"]
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        corners = (row["bbox_x"] + 1, row["bbox_y"] + 1, row["bbox_x"] + row["bbox_w"], row["bbox_y"] + row["bbox_h"])
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), corners):
            ET.SubElement(box, key).text = f"{value:g}"
        ET.ElementTree(doc).write(root / "Annotations" / (row["name"][: -len(".jpg")] + ".xml"), encoding="utf-8")
    for split in ("train", "val"):
        stems = frames.filter(pl.col("split") == split)["name"].str.replace(r"\.jpg$", "")
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems), encoding="utf-8")


def make_yolo(workdir: Path, root: Path) -> None:
    """Ultralytics: data.yaml, images/{train,val}/, labels/{train,val}/ (class cx cy w h, normalised)."""
    frames = _frames(workdir)
    ids = {name: i for i, name in enumerate(LABELS)}
    root.mkdir(parents=True)
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(LABELS))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\nnames:\n{names}", encoding="utf-8")
    for split in ("train", "val"):
        rows = frames.filter(pl.col("split") == split)
        _copy(rows, root / "images" / split)
        (root / "labels" / split).mkdir(parents=True)
        for row in rows.iter_rows(named=True):
            w, h = row["width"], row["height"]
            cx, cy = (row["bbox_x"] + row["bbox_w"] / 2) / w, (row["bbox_y"] + row["bbox_h"] / 2) / h
            line = f"{ids[row['label']]} {cx:.6f} {cy:.6f} {row['bbox_w'] / w:.6f} {row['bbox_h'] / h:.6f}\n"
            (root / "labels" / split / (row["name"][: -len(".jpg")] + ".txt")).write_text(line, encoding="utf-8")


def make_table(workdir: Path, root: Path) -> None:
    """One CSV (image_path, label, x, y, w, h, video) beside an images/ folder; no split column."""
    frames = _frames(workdir)
    _copy(frames, root / "images")
    frames.select(
        image_path=pl.lit("images/") + pl.col("name"),
        label="label",
        x="bbox_x",
        y="bbox_y",
        w="bbox_w",
        h="bbox_h",
        video="video",
    ).write_csv(root / "boxes.csv")


def make_all(workdir: Path) -> None:
    """pets-coco/, pets-voc/, pets-yolo/ and pets-table/ in ``workdir`` (which holds demo/raw and demo/clean)."""
    for name, make in (("coco", make_coco), ("voc", make_voc), ("yolo", make_yolo), ("table", make_table)):
        make(workdir, workdir / f"pets-{name}")
