"""Rules about the class label."""

from __future__ import annotations

import polars as pl

from pawpipe.validation_rules.registry import RuleParams, register_rule


class VocabularyParams(RuleParams):
    # Filled by `ingest clean` from --labels, the source's own vocabulary (COCO categories,
    # YOLO names, AI Hub's six emotions) or, failing those, inferred from the data.
    vocabulary: tuple[str, ...] | None = None


def _short(text: pl.Expr, limit: int = 200) -> pl.Expr:
    """At most ``limit`` characters of a value for a message (a hostile label can be megabytes)."""
    return (
        pl.when(text.str.len_chars() > limit)
        .then(pl.format("{}... ({} characters)", text.str.slice(0, limit), text.str.len_chars()))
        .otherwise(text)
    )


def _label_missing() -> pl.Expr:
    return pl.col("label").is_null() | (pl.col("label").str.strip_chars() == "")


@register_rule(
    "label.missing",
    "the record has no label (null or empty)",
    action="drop",
    detail=lambda p: pl.lit("field 'label': expected a class name, got null or empty"),
    required=True,
)
def missing(p: RuleParams) -> pl.Expr:
    return _label_missing()


@register_rule(
    "label.unknown",
    "the label is not in the vocabulary",
    action="drop",
    params=VocabularyParams,
    detail=lambda p: pl.format(
        "field 'label': expected one of [{}], got '{}'", pl.lit(", ".join(p.vocabulary or ())), _short(pl.col("label"))
    ),
    required=True,
)
def unknown(p: VocabularyParams) -> pl.Expr:
    if p.vocabulary is None:
        return pl.lit(False)
    return ~_label_missing() & ~pl.col("label").is_in(list(p.vocabulary))
