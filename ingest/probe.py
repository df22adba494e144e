"""Whole-file image checks, in a process pool with bounded memory.

For each distinct image path: is it under the dataset root (lexically and after symlinks),
does it exist, does the *whole* file decode (JPEGs at 1/8 scale through libjpeg's DCT
scaling, which still reads every byte, so truncation and corruption are caught at a
fraction of a full decode's cost), and what are its real size, format, mode, EXIF
orientation and content hash.

Size convention: ``width``/``height`` are the size a viewer shows, i.e. after the EXIF
orientation is applied, and boxes are read in that frame. ``shards build`` applies the
same orientation (``open_oriented``) before cropping.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl
from PIL import Image, ImageOps

from ingest.pool import chunked, map_chunks, worker_count
from ingest.schema import PROBES, empty, polars_schema

EXIF_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height
_CHUNK = 64


def resolve_under(root: str, rel: str) -> str | None:
    """The real path of ``rel`` under ``root``, or None when it escapes the root (never opened)."""
    if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")):
        return None
    full = os.path.realpath(os.path.join(root, rel))
    return full if full.startswith(root.rstrip(os.sep) + os.sep) else None


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
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray((arr * (255.0 / top)).round().clip(0, 255).astype("uint8"), mode="L")
    return img.convert("RGB")


def probe_one(root: str, rel: str) -> dict:
    """Check one image; every failure becomes a status and a one-line error, never an exception."""
    row: dict = {"image_path": rel, "status": "ok", "error": None}
    real = resolve_under(root, rel)
    if real is None:
        return {**row, "status": "outside_root", "error": "a path that leaves the root"}
    try:
        with open(real, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return {**row, "status": "missing", "error": "no such file"}
    except (IsADirectoryError, PermissionError, OSError) as exc:  # be specific: I/O failures only
        return {**row, "status": "unreadable", "error": f"{type(exc).__name__}: {exc.strerror or exc}"}
    row["file_bytes"] = len(data)
    if not data:
        return {**row, "status": "unreadable", "error": "empty file (0 bytes)"}
    row["content_hash"] = hashlib.sha256(data).hexdigest()
    try:
        img = Image.open(io.BytesIO(data))
        fmt, mode, (w, h) = img.format, img.mode, img.size
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
        if fmt == "JPEG":
            img.draft(None, (max(1, w // 8), max(1, h // 8)))  # DCT-domain downscale, whole stream read
        img.load()
    except Image.UnidentifiedImageError:
        return {**row, "status": "unreadable", "error": f"not an image ({len(data)} bytes, unrecognised format)"}
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return {**row, "status": "unreadable", "error": f"{type(exc).__name__}: {message}"}
    if orientation in _TRANSPOSED:
        w, h = h, w
    return {**row, "width": w, "height": h, "image_format": fmt, "image_mode": mode, "orientation": orientation}


def _probe_chunk(args: tuple[str, list[str]]) -> list[dict]:
    root, rels = args
    return [probe_one(root, rel) for rel in rels]


def probe_images(root: str | Path, paths: Iterable[str], *, workers: int | None = None, quiet: bool = False) -> pl.DataFrame:
    """Probe every distinct path under ``root``; returns one ``PROBES`` row per path, in input order.

    Work is streamed to ``workers`` processes in small chunks, so memory holds a few files
    per worker, never the dataset's bytes.
    """
    root = os.path.realpath(root)
    paths = list(dict.fromkeys(paths))
    workers = worker_count(workers) if len(paths) >= 2 * _CHUNK else 1
    jobs = [(root, list(part)) for part in chunked(paths, workers=workers, max_chunk=_CHUNK)]
    rows: list[dict] = []
    for out in map_chunks(_probe_chunk, jobs, sizes=[len(p) for _, p in jobs], workers=workers, desc="probe images", unit="img", quiet=quiet):
        rows += out
    return pl.from_dicts(rows, schema=polars_schema(PROBES)) if rows else empty(PROBES)
