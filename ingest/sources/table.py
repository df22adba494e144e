"""One CSV or Parquet table, one row per box: the format of hand-cleaned annotation lists.

Columns are found by common names (case and surrounding spaces ignored):

* image: ``image_path | path | file | filename | file_name | image | img`` (required);
* label: ``label | class | category | class_name | label_name`` (required);
* box (required), the first set present: ``x, y, w, h`` | ``x, y, width, height`` |
  ``bbox_x, bbox_y, bbox_w, bbox_h`` | ``xmin, ymin, xmax, ymax`` | ``x_min, y_min, x_max, y_max`` |
  ``x1, y1, x2, y2``. Corner sets are pixel edges, 0-based: ``w = xmax - xmin`` (the VOC
  1-based inclusive convention belongs to VOC XML, not to tables);
* optional: group ``group | group_id | video | video_id | subject | subject_id``, split
  ``split | subset`` (``training``, ``valid``, ``test2017``...: ``common.contracts.ingest_tables.split_alias``),
  image size ``image_width | img_width | width`` and the same for height (``width``/``height``
  only when the box does not use them).

Every other column rides along as an extra column, except names that the later stages use
themselves (they would collide in the joins) and which are listed in ``notes``.

CSV cells are read as text, then cast with ``strict=False``: a non-numeric box value becomes
null (``bbox.invalid``) while ``bbox_raw`` keeps the cells as written.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pawpipe.common.contracts.ingest_tables import MANIFEST, PROBES, QUARANTINE, RECORDS, conform, split_alias_expr
from pawpipe.ingest.sources import Parsed, SourceOptions
from pawpipe.ingest.sources.files import check_file, shown

NAME = "table"
LOOKS_FOR = "a CSV/Parquet table"
SUFFIXES = (".csv", ".parquet")
IMAGE_NAMES = ("image_path", "path", "file", "filename", "file_name", "image", "img")
LABEL_NAMES = ("label", "class", "category", "class_name", "label_name")
GROUP_NAMES = ("group", "group_id", "video", "video_id", "subject", "subject_id")
SPLIT_NAMES = ("split", "subset")
WIDTH_NAMES = ("image_width", "img_width", "width")
HEIGHT_NAMES = ("image_height", "img_height", "height")
# (x, y, w, h) or (x0, y0, x1, y1) column sets, tried in this order.
BOX_SETS = (
    (("x", "y", "w", "h"), False),
    (("x", "y", "width", "height"), False),
    (("bbox_x", "bbox_y", "bbox_w", "bbox_h"), False),
    (("xmin", "ymin", "xmax", "ymax"), True),
    (("x_min", "y_min", "x_max", "y_max"), True),
    (("x1", "y1", "x2", "y2"), True),
)
_HEADER_BYTES = 1 << 16  # detect reads the header from this much of a CSV
_RESERVED = (
    set(RECORDS.names)
    | set(PROBES.names)
    | set(MANIFEST.names)
    | set(QUARANTINE.names)
    | {"sample_id", "label_id", "norm_cx", "norm_cy", "norm_w", "norm_h"}
)


def detect(root: Path) -> bool:
    """One table at the root that names an image and a label column (a CSV of something else, such as
    a list of planted flips beside a dataset, is not an annotation table); one whose header cannot be
    read counts, so that parsing it says why."""
    found = _candidates(root)
    if len(found) != 1:
        return False
    try:
        names = pq.read_schema(found[0]).names if found[0].suffix.lower() == ".parquet" else _csv_header(found[0])
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError):
        return True
    keys = {name.strip().lower() for name in names}
    return any(n in keys for n in IMAGE_NAMES) and any(n in keys for n in LABEL_NAMES)


def parse(root: Path, options: SourceOptions) -> Parsed:
    """Parse the table named by ``options.annotations`` (or the only one at the root) into records."""
    path = _table_file(root, options.annotations)
    rel = options.annotations.replace("\\", "/") if options.annotations else path.name
    refused = check_file(str(root), rel, max_bytes=options.max_file_bytes, allowed=options.allow_roots)
    if refused is not None:  # outside the root, not a regular file, too large: one row, never read
        rule, message = refused
        failure = pl.DataFrame({"source_file": [shown(rel)], "parse_error": [message], "parse_rule": [rule]})
        return Parsed(records=conform(failure, RECORDS), notes={"table": shown(rel)})
    try:
        table, line_ends = _read(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        # polars appends multi-line hints about its own options; the first line is the failure.
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        failure = pl.DataFrame({"source_file": [rel], "parse_error": [f"{rel}: table does not parse: {message}"]})
        return Parsed(records=conform(failure, RECORDS), notes={"table": rel})
    records, extra, dropped = _records(table, rel)
    return Parsed(
        records=conform(records, RECORDS, extra=extra),
        extra_columns=extra,
        notes={
            "table": rel,
            "rows": table.height,
            "columns_not_kept": dropped,
            **({"line_ends": line_ends} if line_ends else {}),
        },
    )


def _candidates(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())


def _table_file(root: Path, named: str | None) -> Path:
    if named is not None:
        path = root / named
        if not path.exists() or path.is_dir():
            raise ValueError(
                f"{path}: expected a CSV or Parquet table, got {'a folder' if path.exists() else 'nothing'}"
            )
        return path
    found = _candidates(root)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise ValueError(f"{root}: expected one .csv or .parquet table at the root, got {names}; pass --annotations")
    return found[0]


def _csv_header(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        head = handle.read(_HEADER_BYTES)
    return pl.read_csv(_lf_lines(head)[0], n_rows=0, infer_schema=False).columns


def _lf_lines(data: bytes) -> tuple[bytes, str | None]:
    """``data`` with LF line ends, and ``"CR"`` when it had CR-only ones (classic Mac, old Excel exports):
    polars ends lines at LF only, so such a file would read as one header row of hundreds of columns."""
    if b"\r" in data and b"\n" not in data:
        return data.replace(b"\r", b"\n"), "CR"
    return data, None


def _read(path: Path) -> tuple[pl.DataFrame, str | None]:
    """The table, and how its lines end when that needed care (``"CR"``: classic Mac / old Excel exports)."""
    if path.suffix.lower() == ".parquet":
        return pl.read_parquet(path), None
    data, line_ends = _lf_lines(path.read_bytes())
    # All text first: a cast decides later, per column, what is a number.
    return pl.read_csv(data, infer_schema=False), line_ends


def _find(by_key: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((by_key[n] for n in names if n in by_key), None)


def _records(table: pl.DataFrame, rel: str) -> tuple[pl.DataFrame, list[str], list[str]]:
    """RECORDS columns from the table's own columns, plus the extra columns kept and those not kept."""
    by_key: dict[str, str] = {}
    for col in table.columns:
        by_key.setdefault(col.strip().lower(), col)
    image, label = _find(by_key, IMAGE_NAMES), _find(by_key, LABEL_NAMES)
    box = next(
        ((tuple(by_key[n] for n in names), corners) for names, corners in BOX_SETS if all(n in by_key for n in names)),
        None,
    )
    if image is None or label is None or box is None:
        wanted = [what for what, found in (("image path", image), ("label", label), ("box", box)) if found is None]
        raise ValueError(
            f"{rel}: expected columns for {', '.join(wanted)} ({_expected()}), got columns {table.columns}"
        )
    (c0, c1, c2, c3), corners = box
    group, split = _find(by_key, GROUP_NAMES), _find(by_key, SPLIT_NAMES)
    free = {k: v for k, v in by_key.items() if v not in (c2, c3)}
    width, height = _find(free, WIDTH_NAMES), _find(free, HEIGHT_NAMES)

    n0, n1, n2, n3 = (_number(table, c) for c in (c0, c1, c2, c3))
    row = pl.int_range(1, pl.len() + 1)  # 1-based data rows, as a spreadsheet shows them after the header
    path = pl.col(image).cast(pl.String).str.replace_all("\\", "/", literal=True)
    finite = pl.all_horizontal([n.is_not_null() & n.is_finite() for n in (n0, n1, n2, n3)])
    raw = pl.format(
        ", ".join(f"{c}={{}}" for c in (c0, c1, c2, c3)),
        *(pl.col(c).cast(pl.String).fill_null("") for c in (c0, c1, c2, c3)),
    )
    columns = {
        "source_file": pl.lit(rel),
        "record": row.cast(pl.String),
        "image_path": path,
        "group_id": _text_or(pl.col(group), path) if group else path,
        "split": split_alias_expr(pl.col(split).cast(pl.String)) if split else pl.lit(None, pl.String),
        "label": pl.col(label).cast(pl.String),
        "bbox_x": n0,
        "bbox_y": n1,
        "bbox_w": n2 - n0 if corners else n2,
        "bbox_h": n3 - n1 if corners else n3,
        "bbox_raw": pl.when(finite).then(None).otherwise(raw),
        "meta_width": _size(table, width),
        "meta_height": _size(table, height),
        "parse_error": pl.when(path.is_null() | (path.str.strip_chars() == "")).then(
            pl.format("{}: row {}: expected field '{}' (an image path), got nothing", pl.lit(rel), row, pl.lit(image))
        ),
    }
    used = {image, label, c0, c1, c2, c3, group, split, width, height}
    rest = [c for c in table.columns if c not in used]
    extra = [c for c in rest if c not in _RESERVED and not c.startswith("_")]
    dropped = [c for c in rest if c not in extra]
    frame = table.select(*(expr.alias(name) for name, expr in columns.items()), *(pl.col(c) for c in extra))
    return frame, extra, dropped


def _number(table: pl.DataFrame, col: str) -> pl.Expr:
    """A column as float: text is stripped and cast leniently, so 'abc' becomes null."""
    expr = pl.col(col)
    if table.schema[col] == pl.String:
        expr = expr.str.strip_chars()
    return expr.cast(pl.Float64, strict=False)


def _size(table: pl.DataFrame, col: str | None) -> pl.Expr:
    """An image-size column as int; absent, non-numeric or 0 is null (no claim to check)."""
    if col is None:
        return pl.lit(None, pl.Int64)
    size = _number(table, col)
    return pl.when(size > 0).then(size).cast(pl.Int64, strict=False)


def _text_or(col: pl.Expr, fallback: pl.Expr) -> pl.Expr:
    text = col.cast(pl.String)
    return pl.when(text.str.strip_chars() != "").then(text).otherwise(fallback)


def _expected() -> str:
    boxes = " | ".join(",".join(names) for names, _ in BOX_SETS)
    return f"image: {'|'.join(IMAGE_NAMES)}; label: {'|'.join(LABEL_NAMES)}; box: {boxes}"
