"""Rules about the annotation text itself: the file, its fields, its records."""

from __future__ import annotations

import polars as pl
from pydantic import Field

from pawpipe.validation_rules.registry import RuleParams, register_rule

_GATE = pl.col("parse_rule")  # the rule id the label-file gate refused a file under, else null


@register_rule(
    "annotation.malformed",
    "the label file or one of its records does not parse (one row per file; the other files go on)",
    action="drop",
    detail=lambda p: pl.col("parse_error"),
    on_unparsed=True,
    required=True,
)
def malformed(p: RuleParams) -> pl.Expr:
    return pl.col("parse_error").is_not_null() & (_GATE.is_null() | (_GATE == "annotation.malformed"))


class FileSizeParams(RuleParams):
    # Label files are small (an AI Hub video's JSON is tens of KB); COCO's train2017 instances
    # file, the largest common one, is 448 MB. A larger file is refused before it is read.
    max_bytes: int = Field(1 << 30, ge=1)


@register_rule(
    "annotation.too_large",
    "the label file is larger than max_bytes; refused unread (one row per file; the other files go on)",
    action="drop",
    params=FileSizeParams,
    detail=lambda p: pl.col("parse_error"),
    on_unparsed=True,
)
def too_large(p: FileSizeParams) -> pl.Expr:
    return _GATE == "annotation.too_large"


class FieldLengthParams(RuleParams):
    # A class name is a word or two; any other text field (paths included) fits PATH_MAX.
    max_label_chars: int = Field(256, ge=1)
    max_chars: int = Field(4096, ge=1)


_NOT_MEASURED = ("label", "parse_error", "parse_rule")


def _measure(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_label_chars`` and the longest other text field of each record (``_longest``, ``_longest_chars``)."""
    names = [c for c, t in frame.schema.items() if t == pl.String and not c.startswith("_") and c not in _NOT_MEASURED]
    label = pl.col("label").str.len_chars().fill_null(0) if "label" in frame.columns else pl.lit(0, dtype=pl.UInt32)
    if not names:
        return frame.with_columns(_label_chars=label, _longest_chars=pl.lit(0, dtype=pl.UInt32), _longest=pl.lit(""))
    # Column-wise, not a list per row: the longest length, then the first field (in schema order) that has it.
    frame = frame.with_columns(
        _label_chars=label, **{f"_len_{c}": pl.col(c).str.len_chars().fill_null(0) for c in names}
    ).with_columns(_longest_chars=pl.max_horizontal(f"_len_{c}" for c in names))
    longest = pl.coalesce(pl.when(pl.col(f"_len_{c}") == pl.col("_longest_chars")).then(pl.lit(c)) for c in names)
    return frame.with_columns(_longest=longest).drop(f"_len_{c}" for c in names)


@register_rule(
    "annotation.field_too_long",
    "a text field (the label, a path, a source attribute) is longer than its limit",
    action="drop",
    params=FieldLengthParams,
    detail=lambda p: (
        pl.when(pl.col("_label_chars") > p.max_label_chars)
        .then(
            pl.format(
                "field 'label': expected at most {} characters, got {}",
                pl.lit(p.max_label_chars),
                pl.col("_label_chars"),
            )
        )
        .otherwise(
            pl.format(
                "field '{}': expected at most {} characters, got {}",
                pl.col("_longest"),
                pl.lit(p.max_chars),
                pl.col("_longest_chars"),
            )
        )
    ),
    prepare=_measure,
)
def field_too_long(p: FieldLengthParams) -> pl.Expr:
    return (pl.col("_label_chars") > p.max_label_chars) | (pl.col("_longest_chars") > p.max_chars)


_SAME = ("source_file", "image_path", "label", "bbox_x", "bbox_y", "bbox_w", "bbox_h")


def _first_of_each(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_repeat`` (a row repeating an earlier one) and ``_first_record``: the record each repeat repeats
    (messages are written on the rejected rows alone). The window that finds it runs only when a repeat
    exists: most data has none, and the window over seven columns is the costly part."""
    frame = frame.with_columns(_repeat=~pl.struct(_SAME).is_first_distinct())
    if not frame.get_column("_repeat").any():
        return frame.with_columns(_first_record=pl.lit(None, dtype=frame.schema["record"]))
    return frame.with_columns(_first_record=pl.col("record").first().over(_SAME))


@register_rule(
    "annotation.duplicate",
    "the same image, label and box as an earlier record of the same file (it would count twice)",
    action="drop",
    detail=lambda p: pl.format(
        "record '{}': expected one record per image, label and box in a file, got a repeat of record '{}'",
        pl.col("record"),
        pl.col("_first_record"),
    ),
    prepare=_first_of_each,
)
def duplicate(p: RuleParams) -> pl.Expr:
    return pl.col("_repeat")
