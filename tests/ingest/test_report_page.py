"""``report.html`` in a real headless Chromium, and the thumbnails of quarantined examples."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from _browser import check_page, chromium
from PIL import Image

from pawpipe.common.fonts import HANGUL
from pawpipe.ingest.report_page import thumbnail


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def test_report_page_loads_in_chromium_without_errors_and_every_image_resolves(demo_clean: Path) -> None:
    assert chromium() is not None, "chromium is needed for this test (.ci/run installs Debian's package)"
    report = json.loads((demo_clean / "report.json").read_text())
    check = check_page(demo_clean / "report.html", fonts_of="td")
    assert check.title == "pawpipe ingest report"
    assert check.errors == []
    assert check.broken_images == []
    boxed = sum(len(rows) for rule, rows in report["examples"].items() if rule.startswith(("bbox.", "label.")))
    assert check.images >= boxed > 0  # a thumbnail for every example quarantined for its box or label
    charts = 4 + bool(report["label_disagreement"]) + 2  # rules, repairs, warnings, classes x2, formats, modes
    assert check.svgs >= charts
    korean = [t for t in check.texts if not t.text.isascii()]  # the demo's class names (AI Hub's Korean emotions)
    assert korean and all(t.drawn_by(HANGUL) == sum(not c.isascii() for c in t.text) for t in korean), korean


def test_thumbnail_draws_a_box_that_leaves_the_image_on_a_widened_canvas(tmp_path: Path) -> None:
    Image.new("RGB", (100, 50), (255, 255, 255)).save(tmp_path / "a.jpg", quality=95)
    row = {"image_path": "a.jpg", "bbox_x": -20.0, "bbox_y": 10.0, "bbox_w": 40.0, "bbox_h": 20.0}
    image = decode(thumbnail(tmp_path, row))
    assert image.size == (120, 50)  # 20 px of canvas to the left of the image, for the box
    red, grey, white = image.getpixel((0, 20)), image.getpixel((5, 40)), image.getpixel((60, 25))
    assert red[0] > 180 and red[1] < 90 and red[2] < 90  # the box's left edge
    assert all(150 < c < 230 for c in grey)  # canvas outside the image
    assert min(white) > 240  # the image itself


def test_thumbnail_refuses_files_outside_the_root_and_broken_files(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "outside.jpg")
    (tmp_path / "root" / "broken.jpg").write_bytes(b"\xff\xd8not a jpeg")
    assert thumbnail(tmp_path / "root", {"image_path": "../outside.jpg"}) is None
    assert thumbnail(tmp_path / "root", {"image_path": "broken.jpg"}) is None
    assert thumbnail(tmp_path / "root", {"image_path": None}) is None


@pytest.mark.parametrize(
    ("rules", "openable"),
    [
        (["bbox.negative"], True),
        (["label.unknown", "bbox.empty"], True),
        (["image.duplicate"], True),
        (["image.unreadable"], False),
        (["image.too_large"], False),
        (["path.not_regular"], False),
        (["annotation.malformed"], False),
    ],
)
def test_only_images_whose_file_passed_are_opened(rules: list[str], openable: bool) -> None:
    from pawpipe.ingest.report_page import _openable

    assert _openable(rules) is openable


def test_thumbnail_draws_the_box_in_the_frame_a_viewer_shows(tmp_path: Path) -> None:
    """An EXIF-rotated JPEG (stored 100x50, orientation 6: shown 50x100): the box is in display coordinates."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (100, 50), (255, 255, 255)).save(tmp_path / "r.jpg", quality=95, exif=exif)
    image = decode(
        thumbnail(tmp_path, {"image_path": "r.jpg", "bbox_x": 0.0, "bbox_y": 60.0, "bbox_w": 50.0, "bbox_h": 40.0})
    )
    assert image.size == (50, 100)
    red, white = image.getpixel((25, 60)), image.getpixel((25, 30))
    assert red[0] > 180 and red[1] < 90 and red[2] < 90  # the box's top edge, at display y 60
    assert min(white) > 240
