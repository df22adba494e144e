"""Rules about the image file, from the probe's whole-file check."""

from __future__ import annotations

import polars as pl

from validation_rules.registry import RuleParams, register_rule


@register_rule(
    "image.missing",
    "the annotation names an image that does not exist",
    action="drop",
    detail=lambda p: pl.format("image '{}': expected a file, got none", pl.col("image_path")),
)
def missing(p: RuleParams) -> pl.Expr:
    return pl.col("status") == "missing"


@register_rule(
    "image.unreadable",
    "zero bytes, not an image, truncated or corrupt (the whole file is decoded at reduced scale)",
    action="drop",
    detail=lambda p: pl.format("image '{}': expected a decodable image, got {}", pl.col("image_path"), pl.col("error")),
)
def unreadable(p: RuleParams) -> pl.Expr:
    return pl.col("status") == "unreadable"


def _meta_disagrees() -> pl.Expr:
    same = (pl.col("meta_width") == pl.col("width")) & (pl.col("meta_height") == pl.col("height"))
    return pl.col("meta_width").is_not_null() & pl.col("meta_height").is_not_null() & ~same


@register_rule(
    "image.size_mismatch",
    "the size the annotation declares differs from the decoded image (boxes are checked against the real size)",
    action="warn",
    detail=lambda p: pl.format(
        "image '{}': metadata says {}x{}, decoded {}x{}",
        pl.col("image_path"), pl.col("meta_width"), pl.col("meta_height"), pl.col("width"), pl.col("height"),
    ),
)
def size_mismatch(p: RuleParams) -> pl.Expr:
    return (pl.col("status") == "ok") & _meta_disagrees()
