"""Opening an image the one way every stage does: under the root only, as a viewer shows it, 8-bit RGB.

``ingest`` measures sizes and checks boxes in this frame; ``shards`` crops in it. Keeping the
three functions here is what makes the two agree.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112
TRANSPOSED = frozenset({5, 6, 7, 8})  # orientations that swap width and height


def resolve_under(root: str, rel: str, allowed: tuple[str, ...] = ()) -> str | None:
    """The real path of ``rel`` under ``root``, or None when it escapes the root (never opened).

    ``allowed``: other real folders a symlink under the root may lead into (frames kept on another
    disk, linked in as ``images/``); the path itself stays relative to the root.
    """
    if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")):
        return None
    full = os.path.realpath(os.path.join(root, rel))
    return full if any(full.startswith(base.rstrip(os.sep) + os.sep) for base in (root, *allowed)) else None


def open_oriented(data: bytes) -> Image.Image:
    """Decode image bytes as a viewer shows them (EXIF orientation applied), in 8-bit RGB."""
    img = Image.open(io.BytesIO(data))
    img = ImageOps.exif_transpose(img)
    return to_rgb8(img)


def to_rgb8(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: L, LA, P, CMYK, I;16 (scaled, not clipped), RGBA (on black)."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray((arr * (255.0 / top)).round().clip(0, 255).astype("uint8"), mode="L")
    return img.convert("RGB")
