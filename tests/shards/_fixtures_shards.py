"""Builders for the shards tests' small real dataset: photographs as JPEGs of several sizes and
orientations, the odd formats users have (grayscale, CMYK, 16-bit, PNG named .jpg, EXIF
rotated), and files that must land in failed.parquet (corrupt, changed since ingest,
missing); with the manifest.parquet, labels.json and clean_config.json ``ingest clean``
writes."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import skimage.data
from PIL import Image

from pawpipe.common.contracts.ingest_tables import MANIFEST, conform
from pawpipe.common.contracts.labels_file import build_labels
from pawpipe.common.contracts.verified_file import VERIFIED_FILE
from pawpipe.ingest.probe import probe_one

VOCABULARY = ("happy", "sad", "angry")
SMALL = {"size": 96, "max_samples": 5, "workers": 1, "quiet": True}  # fast options for tests
BAD = {"corrupt.jpg": "image.undecodable", "changed.jpg": "image.changed", "missing.jpg": "image.missing"}


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _photos() -> list[Image.Image]:
    return [
        Image.fromarray(a)
        for a in (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket())
    ]


def write_images(root: Path, *, copies: int = 1) -> dict[str, bytes]:
    """Write the image files; returns {relative path: bytes} of those that exist."""
    files: dict[str, bytes] = {}
    sizes = [(640, 480), (480, 640), (512, 512), (600, 400)]
    for c in range(copies):
        for i, photo in enumerate(_photos()):
            w, h = sizes[(i + c) % len(sizes)]
            files[f"photos/{c:03d}/p{i}.jpg"] = _jpeg(photo.resize((w, h), Image.Resampling.BICUBIC))
    base = _photos()[0].resize((640, 480))
    files["odd/gray.jpg"] = _jpeg(base.convert("L"))
    files["odd/cmyk.jpg"] = _jpeg(base.convert("CMYK"))
    buf = io.BytesIO()
    base.convert("RGBA").save(buf, "PNG")
    files["odd/png_named.jpg"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)).save(buf, "PNG")
    files["odd/gray16.png"] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise (portrait)
    files["odd/rot6.jpg"] = _jpeg(base.rotate(90, expand=True), exif=exif.tobytes())
    files["bad/corrupt.jpg"] = b"\xff\xd8\xff\xe0 not really a jpeg " * 40
    files["bad/changed.jpg"] = _jpeg(base)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def make_dataset(base: Path, *, copies: int = 1, test: bool = False) -> Path:
    """Images under ``base/raw``, an ``ingest clean``-style folder ``base/clean``; returns the latter.

    Every fifth file is in val; with ``test`` the one before it is in test, else in train.
    """
    root, clean = base / "raw", base / "clean"
    clean.mkdir(parents=True)
    files = write_images(root, copies=copies)
    rows = []
    for n, rel in enumerate([*files, "bad/missing.jpg"]):
        probe = probe_one(str(root.resolve()), rel)
        name = rel.rsplit("/", 1)[-1]
        if name in BAD:  # rows ingest accepted before the file broke, changed or vanished
            probe = {
                "width": 640,
                "height": 480,
                "image_format": "JPEG",
                "image_mode": "RGB",
                "orientation": 1,
                "content_hash": hashlib.sha256(files.get(rel, b"")).hexdigest(),
            }
            if name == "changed.jpg":
                probe["content_hash"] = "0" * 64
        assert probe.get("width"), (rel, probe)
        w, h = probe["width"], probe["height"]
        boxes = [
            (0.05 * w, 0.1 * h, 0.3 * w, 0.25 * h),
            (0.1 * w, 0.05 * h, 0.85 * w, 0.9 * h),
        ]  # a small and a large box
        for b, (x, y, bw, bh) in enumerate(boxes[: 1 if name in BAD else 2]):
            rows.append(
                {
                    "sample_id": f"s{n:04d}{b}",
                    "image_path": rel,
                    "group_id": rel.rsplit("/", 1)[0] + f"/{n % 5}",
                    "split": "val" if n % 5 == 4 else "test" if test and n % 5 == 3 else "train",
                    "label": VOCABULARY[(n + b) % 3],
                    "label_id": (n + b) % 3,
                    "bbox_x": x,
                    "bbox_y": y,
                    "bbox_w": bw,
                    "bbox_h": bh,
                    **probe,
                }
            )
    manifest = conform(pl.DataFrame(rows), MANIFEST)
    manifest.write_parquet(clean / "manifest.parquet")
    labels = build_labels(manifest, VOCABULARY, label_field="emotion")
    (clean / "labels.json").write_text(json.dumps(labels))
    (clean / "clean_config.json").write_text(json.dumps({"root": str(root.resolve())}))
    return clean


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (lock files and the record of a verify aside): the unit of
    byte-identity comparisons."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".lock" and p.relative_to(folder) != Path(VERIFIED_FILE)
    }
