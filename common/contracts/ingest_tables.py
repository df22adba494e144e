"""The Arrow schemas of every table ingest produces: the one source of truth.

Three stages hand frames to each other:

* a source parser emits ``RECORDS`` (one row per annotated box, raw values);
* the image probe emits ``PROBES`` (one row per distinct image file);
* ``ingest clean`` writes ``MANIFEST`` (clean samples) and ``QUARANTINE``
  (rejected records, with every rule they failed and why).

Source-specific attributes (AI Hub's owner/inspect emotions, COCO's
``iscrowd``...) ride along as extra string/number columns declared by each
source module (``EXTRA_COLUMNS``) and are appended after the core columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl
import pyarrow as pa

# Coordinates are top-left x, y, width, height in pixels of the image as a viewer
# shows it, i.e. after EXIF orientation is applied (see README "Conventions").
BBOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")

RECORDS = pa.schema(
    [
        ("source_file", pa.string()),  # annotation file, POSIX, relative to the root
        ("record", pa.string()),  # frame number / annotation id / line number
        ("image_path", pa.string()),  # POSIX path as the annotation names it, relative to the root
        ("group_id", pa.string()),  # the unit that must not straddle splits (video, image)
        ("split", pa.string()),  # the dataset's own split, or null
        ("label", pa.string()),  # raw label text, or null
        ("bbox_x", pa.float64()),
        ("bbox_y", pa.float64()),
        ("bbox_w", pa.float64()),
        ("bbox_h", pa.float64()),
        ("bbox_raw", pa.string()),  # the box as written, for error messages; null when absent
        ("meta_width", pa.int64()),  # size the annotation claims, or null
        ("meta_height", pa.int64()),
        ("parse_error", pa.string()),  # set when the file or record does not parse (annotation.malformed)
        ("parse_rule", pa.string()),  # the rule of a parse_error other than annotation.malformed (path.not_regular...)
    ]
)

PROBES = pa.schema(
    [
        ("image_path", pa.string()),
        ("status", pa.string()),  # ok | missing | unreadable | outside_root | not_regular | too_large | bad_name
        ("error", pa.string()),  # one line, or null when ok
        ("width", pa.int64()),  # after EXIF orientation
        ("height", pa.int64()),
        ("image_format", pa.string()),  # JPEG, PNG... (the bytes, not the suffix)
        ("image_mode", pa.string()),  # L, RGB, CMYK, I;16...
        ("orientation", pa.int64()),  # EXIF orientation tag, 1 when absent
        ("file_bytes", pa.int64()),
        ("content_hash", pa.string()),  # sha256 hex of the file bytes
        ("dhash", pa.uint64()),  # 64-bit perceptual difference hash (ingest.probe.dhash), null when not decoded
    ]
)

MANIFEST = pa.schema(
    [
        ("sample_id", pa.string()),
        ("image_path", pa.string()),
        ("group_id", pa.string()),
        ("split", pa.string()),
        ("label", pa.string()),
        ("label_id", pa.int64()),
        ("bbox_x", pa.float64()),
        ("bbox_y", pa.float64()),
        ("bbox_w", pa.float64()),
        ("bbox_h", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("image_format", pa.string()),
        ("image_mode", pa.string()),
        ("orientation", pa.int64()),
        ("file_bytes", pa.int64()),
        ("content_hash", pa.string()),
        ("dhash", pa.uint64()),  # perceptual hash, for near-duplicate frames (image.near_duplicate)
        ("source_file", pa.string()),
        ("record", pa.string()),
        ("meta_width", pa.int64()),
        ("meta_height", pa.int64()),
        ("repairs", pa.list_(pa.string())),  # e.g. "bbox.negative: x -3 -> 0"
        ("warnings", pa.list_(pa.string())),  # rule ids whose action is warn
    ]
)

QUARANTINE = pa.schema(
    [
        ("source_file", pa.string()),
        ("record", pa.string()),  # null for a whole-file failure
        ("image_path", pa.string()),
        ("rule", pa.list_(pa.string())),  # every rule the record failed, in registry order
        ("detail", pa.string()),  # what, where, expected, got; one line per rule joined by " | "
        ("sample_id", pa.string()),
        ("label", pa.string()),
        ("group_id", pa.string()),
        ("split", pa.string()),
    ]
)

ORPHANS = pa.schema(
    [
        ("image_path", pa.string()),  # an image on disk that no annotation names
        ("group_id", pa.string()),
    ]
)

# Listed by every output even when empty; ingest assigns a dataset's rows without a split to them.
CORE_SPLITS = ("train", "val")
# The held-out split: only the dataset puts rows in it (ingest never assigns one there), an output
# lists it only when it has rows (a train/val dataset's files stay as they were), training never reads it.
HELD_OUT = "test"
# Every split, in rank order: outputs list them in this order, and when the same image sits in two
# splits the copy in the later one is the leak that is quarantined (``image.duplicate``).
SPLITS = (*CORE_SPLITS, HELD_OUT)
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
_SPLIT_NUMBER = r"\d+$"  # dropped before the lookup: train2017 -> train


def split_alias(token: str) -> str | None:
    """The split (``SPLITS``) for a split name as datasets write it (``train2017``, ``valid``, ``test``...),
    else None."""
    return SPLIT_ALIASES.get(re.sub(_SPLIT_NUMBER, "", token.strip().lower()))


def split_alias_expr(column: pl.Expr) -> pl.Expr:
    """``split_alias`` of every value of a string column (null where it names no split)."""
    token = column.str.strip_chars().str.to_lowercase().str.replace(_SPLIT_NUMBER, "")
    return token.replace_strict(SPLIT_ALIASES, default=None, return_dtype=pl.String)


def listed_splits(present: Iterable[str | None]) -> tuple[str, ...]:
    """The splits an output lists, in ``SPLITS`` order: the core ones always, another when ``present``
    (the split values of the data's rows) names it.

    >>> listed_splits(["val", "train"]), listed_splits(["test", None])
    (('train', 'val'), ('train', 'val', 'test'))
    """
    found = set(present)
    return tuple(split for split in SPLITS if split in CORE_SPLITS or split in found)


def columns(schema: pa.Schema, *names: str) -> tuple[str, ...]:
    """``names`` in the schema's column order; a name the schema lacks raises, so a stage's column
    list fails on import, not mid-run, when a column is renamed.

    >>> columns(ORPHANS, "group_id", "image_path")
    ('image_path', 'group_id')
    """
    missing = [name for name in names if name not in schema.names]
    if missing:
        raise KeyError(f"columns {missing}: expected names of the schema's columns {schema.names}")
    return tuple(name for name in schema.names if name in names)


def polars_schema(schema: pa.Schema) -> dict[str, pl.DataType]:
    """The polars dtypes for an Arrow schema, for building empty or typed frames."""
    return dict(pl.from_arrow(schema.empty_table()).schema)


def empty(schema: pa.Schema) -> pl.DataFrame:
    """An empty frame with exactly this schema."""
    return pl.from_arrow(schema.empty_table())


def conform(frame: pl.DataFrame, schema: pa.Schema, *, extra: list[str] | None = None) -> pl.DataFrame:
    """Select and cast ``frame`` to ``schema`` (missing columns become null), then ``extra`` columns."""
    dtypes = polars_schema(schema)
    cols = [
        (pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype=dtype)).alias(name)
        for name, dtype in dtypes.items()
    ]
    cols += [pl.col(name) for name in (extra or []) if name in frame.columns and name not in dtypes]
    return frame.select(cols)
