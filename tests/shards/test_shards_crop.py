"""The one image-processing definition: geometry, decode-path choice, and that the fast paths
(DALI ROI decode, DCT-scaled draft decode) give the full decode's picture."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from pawpipe.shards.crop import CropError, crop_box, encode, from_roi, output_size, plan_crop, render
from pawpipe.shards.roi import RoiDecoder


def _rows(clean: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in pl.read_parquet(clean / "manifest.parquet").iter_rows(named=True):
        rows.setdefault(row["image_path"], []).append(row)
    return rows


def _root(clean: Path) -> Path:
    return clean.parent / "raw"


def _mae(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size and a.mode == b.mode == "RGB"
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def test_crop_box_adds_margin_rounds_outwards_and_clips():
    assert crop_box((100, 50, 200, 100), 640, 480, crop="bbox", margin=0.1) == (80, 40, 320, 160)
    assert crop_box((100.4, 50.6, 10.2, 10.2), 640, 480, crop="bbox", margin=0.0) == (100, 50, 111, 61)
    assert crop_box((-20, 400, 100, 200), 640, 480, crop="bbox", margin=0.1) == (0, 380, 90, 480)
    assert crop_box((5, 5, 10, 10), 640, 480, crop="full", margin=0.1) == (0, 0, 640, 480)
    assert crop_box((700, 10, 50, 50), 640, 480, crop="bbox", margin=0.0) is None


@pytest.mark.parametrize(
    ("box", "size", "max_upscale", "expected"),
    [
        ((600, 400), 256, 1.0, (384, 256)),  # landscape: shorter side -> size
        ((300, 900), 256, 1.0, (256, 768)),  # portrait
        ((120, 90), 256, 1.0, (120, 90)),  # smaller than size: never upscaled by default
        ((120, 90), 256, 2.0, (240, 180)),  # up to the limit
        ((120, 90), 100, 2.0, (133, 100)),
    ],
)
def test_output_size(box, size, max_upscale, expected):
    assert output_size(*box, size=size, max_upscale=max_upscale) == expected


@pytest.mark.parametrize(
    ("fmt", "mode", "orientation", "box_w", "expected"),
    [
        ("JPEG", "RGB", 1, 800, "draft"),  # crop >= 2x the target: DCT-scaled decode
        ("JPEG", "CMYK", 6, 800, "draft"),  # draft handles every JPEG mode and orientation
        ("JPEG", "RGB", 1, 300, "roi"),  # close to the target: region decode
        ("JPEG", "L", 1, 300, "roi"),
        ("JPEG", "RGB", 6, 300, "full"),  # rotated: no ROI
        ("JPEG", "CMYK", 1, 300, "full"),
        ("PNG", "RGB", 1, 800, "full"),
    ],
)
def test_decode_path_choice(fmt, mode, orientation, box_w, expected):
    row = {
        "image_path": "x.jpg",
        "width": 1000,
        "height": 1000,
        "bbox_x": 0.0,
        "bbox_y": 0.0,
        "bbox_w": float(box_w),
        "bbox_h": float(box_w),
        "image_format": fmt,
        "image_mode": mode,
        "orientation": orientation,
        "content_hash": "ab" * 32,
    }
    plan = plan_crop(row, crop="bbox", margin=0.0, size=256, max_upscale=1.0)
    assert plan.path == expected
    assert plan.out_size == (256, 256)


def test_no_roi_without_a_content_hash():
    """ROI decoding stops after the crop; only the sha256 check proves the rest of the file is intact."""
    row = {
        "image_path": "x.jpg",
        "width": 1000,
        "height": 1000,
        "bbox_x": 0.0,
        "bbox_y": 0.0,
        "bbox_w": 300.0,
        "bbox_h": 300.0,
        "image_format": "JPEG",
        "image_mode": "RGB",
        "orientation": 1,
        "content_hash": None,
    }
    assert plan_crop(row, crop="bbox", margin=0.0, size=256, max_upscale=1.0).path == "full"


def test_empty_box_is_a_crop_error():
    row = {
        "image_path": "x.jpg",
        "width": 100,
        "height": 100,
        "bbox_x": 150.0,
        "bbox_y": 0.0,
        "bbox_w": 10.0,
        "bbox_h": 10.0,
        "image_format": "JPEG",
        "image_mode": "RGB",
        "orientation": 1,
    }
    with pytest.raises(CropError) as info:
        plan_crop(row, crop="bbox", margin=0.1, size=64, max_upscale=1.0)
    assert info.value.reason == "crop.empty"


@pytest.mark.parametrize("size", [96, 200])
def test_fast_paths_match_the_full_decode(small_dataset: Path, size: int):
    """ROI decode gives the full decode's pixels; the DCT-scaled draft differs by a little blur."""
    decoder = RoiDecoder()
    seen = set()
    for rel, rows in _rows(small_dataset).items():
        if not rel.startswith("photos/"):
            continue
        data = (_root(small_dataset) / rel).read_bytes()
        for row in rows:
            plan = plan_crop(row, crop="bbox", margin=0.1, size=size, max_upscale=1.0)
            reference = render(data, dataclasses.replace(plan, path="full"))
            if plan.path == "roi":
                (region,) = decoder.decode([(data, plan.box)])
                fast = from_roi(region, plan)
                assert _mae(fast, reference) < 0.1, rel  # equal pixels; only the border resampling support differs
            else:
                assert plan.path == "draft"
                fast = render(data, plan)
                assert _mae(fast, reference) < 2.5, rel  # measured 0.7 to 1.6
            assert fast.size == plan.out_size
            seen.add(plan.path)
    assert seen == {"roi", "draft"}


@pytest.mark.parametrize("path", ["full", "draft"])
def test_exif_orientation_matches_ingest_convention(small_dataset: Path, path: str):
    """rot6.jpg is the upright picture stored rotated, with orientation 6; its manifest box
    (in the oriented frame) must cut the same picture as the same box on the upright file."""
    rows = _rows(small_dataset)
    upright = (_root(small_dataset) / "odd/png_named.jpg").read_bytes()  # the same base picture, stored upright
    rotated = (_root(small_dataset) / "odd/rot6.jpg").read_bytes()
    for row in rows["odd/rot6.jpg"]:
        assert (row["width"], row["height"], row["orientation"]) == (640, 480, 6)
        plan = dataclasses.replace(plan_crop(row, crop="bbox", margin=0.1, size=96, max_upscale=1.0), path=path)
        got = render(rotated, plan)
        want = render(upright, dataclasses.replace(plan, path="full"))
        assert _mae(got, want) < 4.0  # JPEG generation loss only; a wrong orientation gives ~40


@pytest.mark.parametrize("rel", ["odd/gray.jpg", "odd/cmyk.jpg", "odd/png_named.jpg", "odd/gray16.png"])
def test_odd_modes_become_8bit_rgb(small_dataset: Path, rel: str):
    for row in _rows(small_dataset)[rel]:
        plan = plan_crop(row, crop="bbox", margin=0.1, size=96, max_upscale=1.0)
        img = render(
            (_root(small_dataset) / rel).read_bytes(),
            dataclasses.replace(plan, path="full" if plan.path == "roi" else plan.path),
        )
        assert img.mode == "RGB" and img.size == plan.out_size
        decoded = Image.open(io.BytesIO(encode(img, quality=90)))
        assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "RGB", plan.out_size)
        if rel == "odd/gray16.png":  # 16-bit scaled to 8 bits, not clipped to white
            assert 40 < np.asarray(img).mean() < 220


def test_encode_is_deterministic():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    assert encode(img, quality=90) == encode(img.copy(), quality=90)
