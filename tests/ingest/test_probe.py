"""The whole-file image check on real files of every kind."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pawpipe.common.images import open_oriented, resolve_under
from pawpipe.ingest.probe import probe_images, probe_one


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    img.save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    img.convert("L").save(tmp_path / "gray.jpg")
    img.convert("CMYK").save(tmp_path / "cmyk.jpg")
    img.save(tmp_path / "png.jpg", format="PNG")
    Image.fromarray((arr[..., 0].astype(np.uint16) * 257)).save(tmp_path / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rotated.jpg", exif=exif)
    os.symlink("/etc/hostname", tmp_path / "escape.jpg")
    return tmp_path


@pytest.mark.parametrize(
    "name, status, fmt, mode, size",
    [
        ("ok.jpg", "ok", "JPEG", "RGB", (160, 120)),
        ("gray.jpg", "ok", "JPEG", "L", (160, 120)),
        ("cmyk.jpg", "ok", "JPEG", "CMYK", (160, 120)),
        ("png.jpg", "ok", "PNG", "RGB", (160, 120)),
        ("deep.png", "ok", "PNG", "I;16", (160, 120)),
        ("rotated.jpg", "ok", "JPEG", "RGB", (120, 160)),  # display size: width and height swapped
        ("truncated.jpg", "unreadable", None, None, (None, None)),
        ("empty.jpg", "unreadable", None, None, (None, None)),
        ("text.jpg", "unreadable", None, None, (None, None)),
        ("missing.jpg", "missing", None, None, (None, None)),
        ("escape.jpg", "outside_root", None, None, (None, None)),
        ("../ok.jpg", "outside_root", None, None, (None, None)),
        ("/etc/hostname", "outside_root", None, None, (None, None)),
    ],
)
def test_probe_one(images, name, status, fmt, mode, size) -> None:
    row = probe_one(os.path.realpath(images), name)
    assert row["status"] == status
    assert (row.get("image_format"), row.get("image_mode")) == (fmt, mode)
    assert (row.get("width"), row.get("height")) == size
    assert (row["error"] is None) == (status == "ok")


def test_truncated_error_says_so(images) -> None:
    assert "truncated" in probe_one(str(images), "truncated.jpg")["error"]
    assert probe_one(str(images), "empty.jpg")["error"] == "empty file (0 bytes)"


def test_pool_matches_serial_and_keeps_order(images) -> None:
    for i in range(150):  # enough distinct files for the pool to take several chunks
        (images / f"copy{i}.jpg").write_bytes((images / ("ok.jpg" if i % 3 else "truncated.jpg")).read_bytes())
    names = sorted(p.name for p in images.iterdir()) * 2  # repeats are probed once
    serial = probe_images(images, names, workers=1, quiet=True)
    pooled = probe_images(images, names, workers=2, quiet=True)
    assert serial.equals(pooled)
    assert serial.get_column("image_path").to_list() == sorted(p.name for p in images.iterdir())
    assert serial.filter(serial["status"] == "unreadable").height == 50 + 3


def test_resolve_under_rejects_escapes(tmp_path) -> None:
    root = os.path.realpath(tmp_path)
    assert resolve_under(root, "a/b.jpg") == os.path.join(root, "a/b.jpg")
    assert resolve_under(root, "a/../../b.jpg") is None
    assert resolve_under(root, "") is None


def test_open_oriented_applies_exif_and_gives_rgb8(images) -> None:
    rotated = open_oriented((images / "rotated.jpg").read_bytes())
    assert rotated.size == (120, 160) and rotated.mode == "RGB"
    deep = open_oriented((images / "deep.png").read_bytes())
    assert deep.mode == "RGB"
    want = np.asarray(Image.open(images / "ok.jpg").convert("RGB"))[..., 0]
    got = np.asarray(deep)[..., 0].astype(int)
    assert (
        abs(got - np.asarray(Image.open(images / "deep.png"), dtype=np.float64) / 257).max() <= 1
    )  # scaled, not clipped
    assert want.shape == got.shape
