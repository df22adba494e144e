"""Whole-file image checks, in a process pool with bounded memory.

For each distinct image path: is it under the dataset root (lexically and after symlinks),
does it exist, does the *whole* file decode (JPEGs at 1/8 scale through libjpeg's DCT
scaling, which still reads every byte, so truncation and corruption are caught at a
fraction of a full decode's cost), and what are its real size, format, mode, EXIF
orientation and content hash. From the same reduced decode it takes a 64-bit perceptual hash
(``dhash``) for the ``image.near_duplicate`` rule, so near-copies cost no second decode.

Size convention: ``width``/``height`` are the size a viewer shows, i.e. after the EXIF
orientation is applied, and boxes are read in that frame. ``shards build`` applies the
same orientation (``common.images.open_oriented``) before cropping.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageOps

from pawpipe.common.contracts.ingest_tables import PROBES, empty, polars_schema
from pawpipe.common.images import EXIF_ORIENTATION, TRANSPOSED, resolve_under, to_rgb8
from pawpipe.ingest.pool import chunked, map_chunks, worker_count
from pawpipe.ingest.sources.files import bad_name, file_kind

_CHUNK = 64


def probe_one(root: str, rel: str, *, max_pixels: int | None = None, allowed: tuple[str, ...] = ()) -> dict:
    """Check one image; every failure becomes a status and a one-line error, never an exception.

    The file type is checked before ``open`` (a FIFO would block it forever), and with
    ``max_pixels`` the size in the header is checked before anything is decoded.
    """
    row: dict = {"image_path": rel, "status": "ok", "error": None}
    why = bad_name(rel)
    if why:  # "x.jpg\n" named by an annotation: never opened under a name no one can type
        return {**row, "status": "bad_name", "error": f"the file name {why}"}
    real = resolve_under(root, rel, allowed)
    if real is None:
        return {
            **row,
            "status": "outside_root",
            "error": "a path that leaves the root (--allow-root DIR admits a folder a symlink leads to)",
        }
    try:
        st_mode = os.stat(real).st_mode
        if not stat.S_ISREG(st_mode):
            return {**row, "status": "not_regular", "error": file_kind(st_mode)}
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
        if max_pixels is not None and w * h > max_pixels:  # before getexif(), which decodes a whole PNG
            return {
                **row,
                "status": "too_large",
                "error": f"{w}x{h} pixels (as stored)",
                "width": w,
                "height": h,
                "image_format": fmt,
                "image_mode": mode,
            }
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
        if fmt == "JPEG" and not jpeg_has_scan(data):
            return {
                **row,
                "status": "unreadable",
                "error": "a JPEG with headers but no image data (cut after its headers)",
            }
        if fmt == "JPEG":
            img.draft(None, (max(1, w // 8), max(1, h // 8)))  # DCT-domain downscale, whole stream read
        img.load()
    except Image.UnidentifiedImageError:
        return {**row, "status": "unreadable", "error": f"not an image ({len(data)} bytes, unrecognised format)"}
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return {**row, "status": "unreadable", "error": f"{type(exc).__name__}: {message}"}
    if orientation in TRANSPOSED:
        w, h = h, w
    try:
        phash = dhash(img)
    except (OSError, ValueError):  # a mode PIL cannot convert: the image stays, without a hash
        phash = None
    return {
        **row,
        "width": w,
        "height": h,
        "image_format": fmt,
        "image_mode": mode,
        "orientation": orientation,
        "dhash": phash,
    }


def jpeg_has_scan(data: bytes) -> bool:
    """Whether the JPEG's first scan header is followed by entropy-coded data (not at once by a marker
    other than a restart, nor by the end of the file). libjpeg decodes a file cut right after its
    headers (EOI appended) to a flat grey picture with a warning Pillow does not pass on; False here
    says there is no picture in it. Looks at the marker segments only, never the scan."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return True  # not a marker where one should be: not ours to judge, the decoder decides
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI before any scan
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        start = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # SOS: the scan follows its header
            return start < len(data) and not (
                data[start] == 0xFF and (start + 1 >= len(data) or data[start + 1] not in _IN_SCAN)
            )
        pos = start
    return False


_IN_SCAN = frozenset({0x00, *range(0xD0, 0xD8)})  # a stuffed 0xFF and restart markers stay inside a scan


def dhash(img: Image.Image) -> int:
    """The 64-bit difference hash of an image as a viewer shows it (dHash).

    Grey 9x8 thumbnail (box filter), one bit per horizontally adjacent pair: is the left pixel
    brighter than the right one. Robust to re-encoding, brightness and small shifts; changes
    when the content moves. Bits row-major, first bit most significant.
    """
    grey = to_rgb8(ImageOps.exif_transpose(img)).convert("L").resize((9, 8), Image.Resampling.BOX)
    px = np.asarray(grey, dtype=np.int16)
    return int.from_bytes(np.packbits(px[:, :-1] > px[:, 1:]).tobytes(), "big")


def _probe_chunk(args: tuple[str, list[str], int | None, tuple[str, ...]]) -> list[dict]:
    root, rels, max_pixels, allowed = args
    return [probe_one(root, rel, max_pixels=max_pixels, allowed=allowed) for rel in rels]


def probe_images(
    root: str | Path,
    paths: Iterable[str],
    *,
    workers: int | None = None,
    quiet: bool = False,
    max_pixels: int | None = None,
    allowed: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Probe every distinct path under ``root``; returns one ``PROBES`` row per path, in input order.

    Work is streamed to ``workers`` processes in small chunks, so memory holds a few files
    per worker, never the dataset's bytes.
    """
    root = os.path.realpath(root)
    paths = list(dict.fromkeys(paths))
    workers = worker_count(workers) if len(paths) >= 2 * _CHUNK else 1
    allowed = tuple(os.path.realpath(a) for a in allowed)
    jobs = [(root, list(part), max_pixels, allowed) for part in chunked(paths, workers=workers, max_chunk=_CHUNK)]
    rows: list[dict] = []
    for out in map_chunks(
        _probe_chunk,
        jobs,
        sizes=[len(p) for _, p, *_ in jobs],
        workers=workers,
        desc="probe images",
        unit="img",
        quiet=quiet,
    ):
        rows += out
    return pl.from_dicts(rows, schema=polars_schema(PROBES)) if rows else empty(PROBES)
