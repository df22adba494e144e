"""Rules about where an annotation's image path points."""

from __future__ import annotations

import polars as pl

from validation_rules.registry import RuleParams, register_rule


@register_rule(
    "path.outside_root",
    "the image path resolves outside the dataset root (absolute, '..' or a symlink); never opened",
    action="drop",
    detail=lambda p: pl.format("image path '{}': expected a file under the dataset root, got {}", pl.col("image_path"), pl.col("error")),
)
def outside_root(p: RuleParams) -> pl.Expr:
    return pl.col("status") == "outside_root"
