"""What the annotation sources share: exact number checks, image sizes, box finiteness, failure rows and messages.

Each source keeps the reading of its own notation (an AI Hub box object, a COCO ``bbox`` list,
VOC corners as XML text, a YOLO line); the checks they all make on what they read live here
once. ``table`` works on whole columns, so it makes the same checks as polars expressions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pawpipe.common.contracts.ingest_tables import RECORDS, polars_schema

# The columns of a source's record rows, in order (sources that build rows as tuples use it):
# RECORDS but ``parse_rule``, which only the file gate (``files.with_refused``) sets.
ROW_SCHEMA = {name: dtype for name, dtype in polars_schema(RECORDS).items() if name != "parse_rule"}

NUMBER = (int, float)  # exact types: bool and numeric strings are not numbers here
INT64 = (-(2**63), 2**63 - 1)


class Malformed(ValueError):
    """A label file whose structure is not its format's; the message says what was expected and got."""


def is_number(v: object) -> bool:
    """A JSON number: exactly an int or a float (``True`` and ``"4"`` are not)."""
    return type(v) in NUMBER


def is_int64(v: object) -> bool:
    """A JSON integer that an Int64 column holds."""
    return type(v) is int and INT64[0] <= v <= INT64[1]


def json_float(v: object) -> float | None:
    """A JSON number as a float; anything else, or an integer beyond a double's range, is None."""
    if type(v) not in NUMBER:
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def text_float(text: str | None) -> float | None:
    """A number written as text (an XML element, a txt field); None when absent, empty or not a number."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def all_finite(*values: float | None) -> bool:
    """Every value a finite number: a box that is not keeps its text as written (``bbox_raw``)."""
    return all(v is not None and math.isfinite(v) for v in values)


def positive_size(v: object) -> int | None:
    """An image size a file claims: a positive whole number (``640`` or ``640.0``) that Int64 holds.

    Anything else (0, missing, fractional, not a number, past Int64) claims nothing: None.

    >>> positive_size(640.0), positive_size(0), positive_size(10**400)
    (640, None, None)
    """
    if type(v) not in NUMBER:
        return None
    try:
        return int(v) if math.isfinite(v) and 0 < v <= INT64[1] and v == int(v) else None
    except OverflowError:  # an integer beyond a double's range
        return None


def failure(
    rel: str, message: str, *, record: str | None = None, image_path: str | None = None, rule: str | None = None
) -> dict[str, str | None]:
    """The RECORDS fields of a file or record that does not parse: where it is and why, nothing else.

    ``rule`` is the rule id when it is not ``annotation.malformed`` (``path.bad_name``...).
    """
    return {"source_file": rel, "record": record, "image_path": image_path, "parse_error": message, "parse_rule": rule}


def failure_row(
    schema: Mapping[str, object], rel: str, message: str, *, record: str | None = None, split: str | None = None
) -> tuple:
    """``failure`` as a row tuple in ``schema`` order (``ROW_SCHEMA`` then the source's extra columns), the rest
    null."""
    fields = {"split": split, **failure(rel, message, record=record)}
    return tuple(fields.get(name) for name in schema)


def cannot_read(rel: str, exc: OSError) -> str:
    """The message for a label file the OS would not read."""
    return f"{rel}: cannot read: {exc.strerror or exc}"


def does_not_parse(rel: str, syntax: str, exc: Exception) -> str:
    """The message for a file that is not valid ``syntax`` (JSON, XML); nesting too deep for the parser is said
    in words."""
    why = "nested too deeply" if isinstance(exc, RecursionError) else exc
    return f"{rel}: {syntax} does not parse: {why}"
