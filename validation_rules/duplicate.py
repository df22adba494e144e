"""Rules across records: the same image bytes under two groups (leakage across splits)."""

from __future__ import annotations

import polars as pl

from validation_rules.registry import RuleParams, register_rule

# The copy that stays is the one in the smallest (split rank, group id): train before val,
# so a leak is removed from validation, never from training.
_GROUP_KEY = pl.concat_str(
    [pl.when(pl.col("split") == "val").then(pl.lit("1")).otherwise(pl.lit("0")), pl.col("group_id").fill_null("")]
)
_KEEPER = pl.when(pl.col("_ok")).then(_GROUP_KEY).min().over("content_hash")


@register_rule(
    "image.duplicate",
    "identical image bytes appear in another group (a leak when the groups sit in different splits)",
    action="drop",
    detail=lambda p: pl.format(
        "image '{}' in group '{}': expected unique content, got the same bytes as group '{}'",
        pl.col("image_path"), pl.col("group_id"), _KEEPER.str.slice(1),
    ),
)
def duplicate(p: RuleParams) -> pl.Expr:
    return pl.col("_ok") & pl.col("content_hash").is_not_null() & (_GROUP_KEY != _KEEPER)
