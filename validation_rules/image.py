"""Rules about the image file, from the probe's whole-file check."""

from __future__ import annotations

import polars as pl
from pydantic import Field

from pawpipe.validation_rules.registry import RuleParams, register_rule


@register_rule(
    "image.missing",
    "the annotation names an image that does not exist",
    action="drop",
    detail=lambda p: pl.format("image '{}': expected a file, got none", pl.col("image_path")),
    required=True,
)
def missing(p: RuleParams) -> pl.Expr:
    return pl.col("status") == "missing"


@register_rule(
    "image.unreadable",
    "zero bytes, not an image, truncated or corrupt (the whole file is decoded at reduced scale)",
    action="drop",
    detail=lambda p: pl.format("image '{}': expected a decodable image, got {}", pl.col("image_path"), pl.col("error")),
    required=True,
)
def unreadable(p: RuleParams) -> pl.Expr:
    return pl.col("status") == "unreadable"


class PixelParams(RuleParams):
    # The users' frames are 1920x1080 (2.1 Mpx); 4096x4096 admits 4K frames with room to spare
    # and refuses a 13000x13000 PNG of a few hundred KB before it is decoded (0.8 GB of pixels).
    max_pixels: int = Field(4096 * 4096, ge=1)


@register_rule(
    "image.too_large",
    "the image has more pixels than max_pixels (read from the header; never decoded)",
    action="drop",
    params=PixelParams,
    detail=lambda p: pl.format(
        "image '{}': expected at most {} pixels, got {}x{}",
        pl.col("image_path"),
        pl.lit(p.max_pixels),
        pl.col("width"),
        pl.col("height"),
    ),
)
def too_large(p: PixelParams) -> pl.Expr:
    return pl.col("status") == "too_large"


def _meta_disagrees() -> pl.Expr:
    same = (pl.col("meta_width") == pl.col("width")) & (pl.col("meta_height") == pl.col("height"))
    return pl.col("meta_width").is_not_null() & pl.col("meta_height").is_not_null() & ~same


@register_rule(
    "image.size_mismatch",
    "the size the annotation declares differs from the decoded image (boxes are checked against the real size)",
    action="warn",
    detail=lambda p: pl.format(
        "image '{}': metadata says {}x{}, decoded {}x{}",
        pl.col("image_path"),
        pl.col("meta_width"),
        pl.col("meta_height"),
        pl.col("width"),
        pl.col("height"),
    ),
)
def size_mismatch(p: RuleParams) -> pl.Expr:
    return (pl.col("status") == "ok") & _meta_disagrees()
