"""Rules across records: the same image bytes under two groups (leakage across splits)."""

from __future__ import annotations

import polars as pl

from pawpipe.common.contracts.ingest_tables import SPLITS
from pawpipe.validation_rules.registry import RuleParams, register_rule

# The copy that stays is the one in the smallest (split rank, group id), ranks in SPLITS order:
# train before val before test, so a leak is removed from validation or test, never from
# training (a row without a split ranks with train).
_SPLIT_RANK = {split: str(rank) for rank, split in enumerate(SPLITS)}
_GROUP_KEY = pl.concat_str(
    [pl.col("split").replace_strict(_SPLIT_RANK, default="0", return_dtype=pl.String), pl.col("group_id").fill_null("")]
)


def _mark_duplicates(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``_dup_keeper``: for a still-clean row whose bytes also sit in a group that stays, that group.

    Hashing the content ids once and grouping only the few duplicated rows keeps this linear
    and cheap on millions of rows (a window over every row is not).
    """
    candidates = (
        frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), "_ok", "content_hash", "split", "group_id")
        .filter(pl.col("_ok") & pl.col("content_hash").is_not_null())
        .filter(pl.col("content_hash").hash().is_duplicated())
        .with_columns(_gkey=_GROUP_KEY)
        .with_columns(_keeper=pl.col("_gkey").min().over("content_hash"))
        .filter(pl.col("_gkey") != pl.col("_keeper"))
    )
    keeper = pl.Series("_dup_keeper", [None] * frame.height, dtype=pl.String)
    if candidates.height:
        keeper = keeper.scatter(candidates.get_column("_row"), candidates.get_column("_keeper").str.slice(1))
    return frame.with_columns(keeper)


@register_rule(
    "image.duplicate",
    "identical image bytes appear in another group (a leak when the groups sit in different splits)",
    action="drop",
    detail=lambda p: pl.format(
        "image '{}' in group '{}': expected unique content, got the same bytes as group '{}'",
        pl.col("image_path"),
        pl.col("group_id"),
        pl.col("_dup_keeper"),
    ),
    prepare=_mark_duplicates,
)
def duplicate(p: RuleParams) -> pl.Expr:
    return pl.col("_dup_keeper").is_not_null()
