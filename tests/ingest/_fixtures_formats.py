"""Small, correct datasets in each annotation format, written as real files (shared by the source tests)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path

import polars as pl
from PIL import Image


def write_jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> None:
    """A real JPEG of ``size`` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shade = zlib.crc32(path.name.encode()) % 200  # distinct bytes per file, or they would be duplicates
    Image.new("RGB", size, (120, 80, shade)).save(path, quality=80)


def write_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def coco_doc(images: list[tuple[int, str, int, int]], annotations: list[dict], categories: dict[int, str]) -> dict:
    return {
        "info": {"description": "test"},
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": annotations,
        "categories": [{"id": k, "name": v, "supercategory": "animal"} for k, v in categories.items()],
    }


COCO_CATEGORIES = {1: "cat", 3: "dog"}  # non-contiguous ids, as in COCO


def make_coco(root: Path) -> Path:
    """COCO download layout: annotations/instances_{train,val}2017.json, images in train2017/ and val2017/."""
    write_jpeg(root / "train2017" / "a.jpg", (64, 48))
    write_jpeg(root / "train2017" / "b.jpg", (32, 32))
    write_jpeg(root / "val2017" / "c.jpg", (40, 30))
    write_json(
        root / "annotations" / "instances_train2017.json",
        coco_doc(
            [(1, "a.jpg", 64, 48), (2, "b.jpg", 32, 32)],
            [
                {"id": 10, "image_id": 1, "category_id": 3, "bbox": [1.5, 2, 30, 20.25], "iscrowd": 0, "area": 607.5},
                {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1, "area": 100},
            ],
            COCO_CATEGORIES,
        ),
    )
    write_json(
        root / "annotations" / "instances_val2017.json",
        coco_doc(
            [(5, "c.jpg", 40, 30)],
            [{"id": 20, "image_id": 5, "category_id": 1, "bbox": [4, 5, 6, 7], "iscrowd": 0}],
            COCO_CATEGORIES,
        ),
    )
    return root


VOC_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>{filename}</filename>
  <path>C:\\Users\\someone\\{filename}</path>
  {size}
  {objects}
</annotation>
"""


def voc_object(name: str, box: tuple, *, difficult: int = 0, truncated: int = 0) -> str:
    corners = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return (
        f"<object><name>{name}</name><pose>Left</pose><truncated>{truncated}</truncated>"
        f"<difficult>{difficult}</difficult><bndbox>{corners}</bndbox></object>"
    )


def voc_xml(filename: str, objects: list[str], size: tuple[int, int] | None = (64, 48)) -> str:
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    return VOC_XML.format(filename=filename, size=size_xml, objects="\n  ".join(objects))


def make_voc(root: Path) -> Path:
    """VOC devkit layout: Annotations/, JPEGImages/, ImageSets/Main/{train,val}.txt."""
    ann = root / "Annotations"
    ann.mkdir(parents=True)
    write_jpeg(root / "JPEGImages" / "2007_000001.jpg", (64, 48))
    write_jpeg(root / "JPEGImages" / "2007_000002.jpg", (32, 32))
    (ann / "2007_000001.xml").write_text(
        voc_xml(
            "2007_000001.jpg",
            [voc_object("dog", (1, 1, 10, 20)), voc_object("cat", (5, 6, 40, 47), difficult=1, truncated=1)],
        )
    )
    (ann / "2007_000002.xml").write_text(voc_xml("2007_000002.jpg", [voc_object("cat", (2, 3, 31, 32))], size=(32, 32)))
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_000001\n")
    (sets / "val.txt").write_text("2007_000002\n")
    (sets / "cat_train.txt").write_text("2007_000001 -1\n")  # per-class lists are not split lists
    return root


def make_yolo(root: Path) -> Path:
    """Ultralytics layout: images/{train,val}/, labels/{train,val}/, data.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    write_jpeg(root / "images" / "train" / "a.jpg", (64, 48))
    write_jpeg(root / "images" / "train" / "b.png", (32, 32))
    write_jpeg(root / "images" / "val" / "c.jpg", (40, 40))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n0 0.25 0.75 0.5 0.5\n")
    (root / "labels" / "train" / "b.txt").write_text("0 0.5 0.5 1 1\n")
    (root / "labels" / "val" / "c.txt").write_text("")  # background image
    return root


def make_table(root: Path) -> Path:
    """One CSV at the root naming images under images/."""
    write_jpeg(root / "images" / "a.jpg", (64, 48))
    write_jpeg(root / "images" / "b.jpg", (32, 32))
    pl.DataFrame(
        {
            "image_path": ["images/a.jpg", "images/b.jpg"],
            "label": ["cat", "dog"],
            "x": [1, 2],
            "y": [3, 4],
            "w": [10, 20],
            "h": [15, 16],
        }
    ).write_csv(root / "boxes.csv")
    return root


LAYOUTS: dict[str, Callable[[Path], Path]] = {
    "coco": make_coco,
    "voc": make_voc,
    "yolo": make_yolo,
    "table": make_table,
}


def add_test_part(fmt: str, root: Path) -> list[str]:
    """Add a held-out test part, written the format's own way, to ``LAYOUTS[fmt]``'s dataset at ``root``:
    ``instances_test2017.json``, ``ImageSets/Main/test.txt``, ``images/test`` + ``labels/test``, a
    ``split`` column saying ``test`` / ``Testing``. Returns the image path of each of its 3 boxes."""
    if fmt == "coco":
        write_jpeg(root / "test2017" / "d.jpg", (64, 48))
        write_jpeg(root / "test2017" / "e.jpg", (40, 40))
        anns = [
            {"id": 30, "image_id": 7, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 31, "image_id": 7, "category_id": 3, "bbox": [20, 20, 10, 10]},
            {"id": 32, "image_id": 8, "category_id": 3, "bbox": [2, 2, 8, 8]},
        ]
        write_json(
            root / "annotations" / "instances_test2017.json",
            coco_doc([(7, "d.jpg", 64, 48), (8, "e.jpg", 40, 40)], anns, COCO_CATEGORIES),
        )
        return ["test2017/d.jpg", "test2017/d.jpg", "test2017/e.jpg"]
    if fmt == "voc":
        write_jpeg(root / "JPEGImages" / "2007_000003.jpg", (64, 48))
        write_jpeg(root / "JPEGImages" / "2007_000004.jpg", (40, 40))
        objects = {
            "2007_000003": [voc_object("cat", (2, 2, 11, 11)), voc_object("dog", (21, 21, 30, 30))],
            "2007_000004": [voc_object("dog", (3, 3, 10, 10))],
        }
        size = {"2007_000003": (64, 48), "2007_000004": (40, 40)}
        for ident, objs in objects.items():
            (root / "Annotations" / f"{ident}.xml").write_text(voc_xml(f"{ident}.jpg", objs, size=size[ident]))
        (root / "ImageSets" / "Main" / "test.txt").write_text("2007_000003\n2007_000004\n")
        return ["JPEGImages/2007_000003.jpg", "JPEGImages/2007_000003.jpg", "JPEGImages/2007_000004.jpg"]
    if fmt == "yolo":
        write_jpeg(root / "images" / "test" / "d.jpg", (64, 48))
        write_jpeg(root / "images" / "test" / "e.jpg", (40, 40))
        (root / "labels" / "test").mkdir(parents=True)
        (root / "labels" / "test" / "d.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.25 0.25 0.2 0.2\n")
        (root / "labels" / "test" / "e.txt").write_text("1 0.5 0.5 0.5 0.5\n")
        return ["images/test/d.jpg", "images/test/d.jpg", "images/test/e.jpg"]
    if fmt == "table":
        write_jpeg(root / "images" / "d.jpg", (64, 48))
        write_jpeg(root / "images" / "e.jpg", (40, 40))
        boxes = pl.read_csv(root / "boxes.csv").with_columns(split=pl.lit(""))
        held_out = pl.DataFrame(
            {
                "image_path": ["images/d.jpg", "images/d.jpg", "images/e.jpg"],
                "label": ["cat", "dog", "dog"],
                "x": [1, 20, 2],
                "y": [1, 20, 2],
                "w": [10, 10, 8],
                "h": [10, 10, 8],
                "split": ["test", "test", "Testing"],
            }
        )
        pl.concat([boxes, held_out], how="vertical_relaxed").write_csv(root / "boxes.csv")
        return ["images/d.jpg", "images/d.jpg", "images/e.jpg"]
    raise ValueError(f"no test part for {fmt!r}")
