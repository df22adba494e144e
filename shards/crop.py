"""The one definition of a stored sample's pixels: box + margin -> crop -> resize -> JPEG.

Geometry is in the frame a viewer shows (EXIF orientation applied), the frame ``ingest``
measured ``width``/``height`` and the boxes in. The crop box is the annotated box grown by
``margin`` x its width (height) on the left and right (top and bottom), rounded outwards to
whole pixels and clipped to the image. It is resized so its shorter side is ``size``, or
``max_upscale`` x its own shorter side when that is smaller (default 1.0: never upscaled),
with Pillow's antialiased bicubic filter, and re-encoded as baseline 4:2:0 JPEG at
``quality``. Every input mode becomes 8-bit RGB through ``ingest.probe.to_rgb8``.

Three decode paths give the same picture; the choice is made per sample from the manifest:

* ``draft``: JPEGs whose crop is at least twice the target size. libjpeg-turbo decodes the
  whole file at 1/2, 1/4 or 1/8 scale in the DCT domain (``Image.draft``), never below the
  target size; the box is scaled with it. EXIF orientation is applied after the scaled
  decode, exactly as ``open_oriented`` applies it.
* ``roi``: other JPEGs in RGB or L with EXIF orientation 1 and a ``content_hash``. DALI's CPU
  ``decoders.image_slice`` (libjpeg-turbo) decodes only the crop's region (see
  ``shards.roi``); its pixels equal a full decode's. Rotated JPEGs (orientation != 1, rare)
  take ``draft``/``full`` instead, so the ROI path never has to map boxes between frames.
* ``full``: everything else (PNG, CMYK, 16-bit, rotated small crops): ``open_oriented``.

The ROI path reads only the bytes up to the crop's last row, so a file truncated below the
crop would not be noticed here; that is safe because ``ingest`` decoded every whole file and
``shards build`` checks the file's sha256 against the manifest's ``content_hash`` first.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from pawpipe.common.images import TRANSPOSED, open_oriented, to_rgb8

DecodePath = Literal["roi", "draft", "full"]
DRAFT_MIN_REDUCTION = 2.0  # DCT scaling needs a factor of 2 to do anything
ROI_MODES = ("RGB", "L")  # modes DALI's RGB output matches Pillow's conversion for, bit for bit
RESAMPLE = Image.Resampling.BICUBIC


class CropError(ValueError):
    """A sample whose crop cannot be made; ``reason`` is the failure id recorded in failed.parquet."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class CropPlan:
    """What to cut and how: box (x0, y0, x1, y1) in oriented pixels, output (w, h), decode path."""

    box: tuple[int, int, int, int]
    out_size: tuple[int, int]
    path: DecodePath
    image_size: tuple[int, int]  # (width, height) after orientation, from the manifest
    orientation: int

    @property
    def reduction(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1]) / min(self.out_size)


def crop_box(
    bbox: tuple[float, float, float, float], width: int, height: int, *, crop: str, margin: float
) -> tuple[int, int, int, int] | None:
    """The pixel box to cut from a ``width`` x ``height`` image, or None when it is empty.

    >>> crop_box((10, 20, 100, 50), 640, 480, crop="bbox", margin=0.1)
    (0, 15, 120, 75)
    """
    if crop == "full":
        return (0, 0, width, height)
    x, y, w, h = bbox
    x0 = max(0, math.floor(x - margin * w))
    y0 = max(0, math.floor(y - margin * h))
    x1 = min(width, math.ceil(x + w + margin * w))
    y1 = min(height, math.ceil(y + h + margin * h))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return (x0, y0, x1, y1)


def output_size(box_w: int, box_h: int, *, size: int, max_upscale: float) -> tuple[int, int]:
    """(w, h) whose shorter side is ``size``, or at most ``max_upscale`` x the box's shorter side."""
    short = min(box_w, box_h)
    target = max(1, min(size, math.floor(short * max_upscale)))
    scale = target / short
    if box_w <= box_h:
        return target, max(1, round(box_h * scale))
    return max(1, round(box_w * scale)), target


def plan_crop(row: dict, *, crop: str, margin: float, size: int, max_upscale: float) -> CropPlan:
    """The crop plan for one manifest row (needs bbox_*, width, height, image_format, image_mode, orientation)."""
    width, height = row["width"], row["height"]
    if not width or not height:
        raise CropError(
            "crop.empty", f"{row['image_path']}: expected the image size in the manifest, got {width}x{height}"
        )
    bbox = (row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"])
    if crop == "bbox" and any(v is None or not math.isfinite(v) for v in bbox):
        raise CropError("crop.empty", f"{row['image_path']}: expected a finite box, got {bbox}")
    box = crop_box(bbox, width, height, crop=crop, margin=margin)
    if box is None:
        raise CropError(
            "crop.empty",
            f"{row['image_path']}: box {bbox} with margin {margin} leaves nothing of a {width}x{height} image",
        )
    out = output_size(box[2] - box[0], box[3] - box[1], size=size, max_upscale=max_upscale)
    orientation = int(row.get("orientation") or 1)
    is_jpeg = row.get("image_format") == "JPEG"
    reduction = min(box[2] - box[0], box[3] - box[1]) / min(out)
    if is_jpeg and reduction >= DRAFT_MIN_REDUCTION:
        path: DecodePath = "draft"
    elif is_jpeg and orientation == 1 and row.get("image_mode") in ROI_MODES and row.get("content_hash"):
        path = "roi"  # needs the hash check: ROI decoding alone would not notice a truncated tail
    else:
        path = "full"
    return CropPlan(box=box, out_size=out, path=path, image_size=(width, height), orientation=orientation)


def decode_full(data: bytes, plan: CropPlan) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The whole image as a viewer shows it, and the crop box in it."""
    img = open_oriented(data)
    _check_size(img.size, plan.image_size, 1)
    return img, tuple(map(float, plan.box))


def decode_draft(data: bytes, plan: CropPlan) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The whole JPEG decoded at a reduced DCT scale (never below the target), and the box scaled to it."""
    img = Image.open(io.BytesIO(data))
    w, h = plan.image_size
    stored = (h, w) if plan.orientation in TRANSPOSED else (w, h)
    want = min(plan.out_size) / min(plan.box[2] - plan.box[0], plan.box[3] - plan.box[1])
    chosen = img.draft(None, (max(1, math.ceil(stored[0] * want)), max(1, math.ceil(stored[1] * want))))
    scale = stored[0] / chosen[1][2] if chosen else 1.0
    img = to_rgb8(ImageOps.exif_transpose(img))
    _check_size(img.size, plan.image_size, scale)
    return img, tuple(v / scale for v in plan.box)


def finish(img: Image.Image, box: tuple[float, float, float, float], plan: CropPlan) -> Image.Image:
    """Cut ``box`` out of ``img`` and resize it to the plan's output size in one resampling step."""
    return img.resize(plan.out_size, RESAMPLE, box=box)


def from_roi(pixels: np.ndarray, plan: CropPlan) -> Image.Image:
    """Finish a crop whose region was decoded alone (``shards.roi``): pixels are exactly ``plan.box``."""
    expected = (plan.box[3] - plan.box[1], plan.box[2] - plan.box[0], 3)
    if pixels.shape != expected:
        raise CropError("image.size_mismatch", f"ROI decode gave {pixels.shape}, expected {expected}")
    img = Image.fromarray(pixels, "RGB")
    return finish(img, (0.0, 0.0, float(expected[1]), float(expected[0])), plan)


def render(data: bytes, plan: CropPlan) -> Image.Image:
    """The stored picture for a ``draft`` or ``full`` plan (``roi`` plans go through ``from_roi``)."""
    if plan.path == "draft":
        img, box = decode_draft(data, plan)
    else:
        img, box = decode_full(data, plan)
    return finish(img, box, plan)


def encode(img: Image.Image, *, quality: int) -> bytes:
    """Baseline JPEG, no metadata: the same pixels and options always give the same bytes."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling="4:2:0", optimize=False, progressive=False)
    return buf.getvalue()


def _check_size(got: tuple[int, int], manifest: tuple[int, int], scale: float) -> None:
    expected = tuple(math.ceil(v / scale) for v in manifest)
    if got != expected:
        raise CropError(
            "image.size_mismatch",
            f"decoded (oriented) size {got[0]}x{got[1]} at 1/{scale:g} scale, expected {expected[0]}x{expected[1]} "
            f"from the manifest's {manifest[0]}x{manifest[1]}",
        )
