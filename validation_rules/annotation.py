"""Rules about the annotation text itself."""

from __future__ import annotations

import polars as pl

from validation_rules.registry import RuleParams, register_rule


@register_rule(
    "annotation.malformed",
    "the label file or one of its records does not parse (one row per file; the other files go on)",
    action="drop",
    detail=lambda p: pl.col("parse_error"),
)
def malformed(p: RuleParams) -> pl.Expr:
    return pl.col("parse_error").is_not_null()
