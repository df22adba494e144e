"""Rules about the bounding box. They run in this order, each on the box the previous left."""

from __future__ import annotations

import polars as pl
from pydantic import Field

from pawpipe.validation_rules.registry import Repair, RuleParams, register_rule

X, Y, W, H = (pl.col(c) for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
_BOX = pl.format("(x={}, y={}, w={}, h={})", X, Y, W, H)


class ClipParams(RuleParams):
    # A box at most this many pixels outside the image is clipped (and the repair recorded);
    # further out it is quarantined. 0 turns clipping off.
    max_clip_px: float = Field(16.0, ge=0)


class MinSizeParams(RuleParams):
    min_size: float = Field(8.0, ge=0)


def _finite(c: pl.Expr) -> pl.Expr:
    return c.is_not_null() & c.is_finite()


# The geometric rules only judge boxes that are four finite numbers.
_VALID = _finite(X) & _finite(Y) & _finite(W) & _finite(H)


@register_rule(
    "bbox.invalid",
    "the box is missing, null, non-numeric or non-finite",
    action="drop",
    detail=lambda p: pl.format(
        "field 'bounding_box': expected 4 finite numbers x, y, width, height, got {}",
        pl.col("bbox_raw").fill_null("nothing"),
    ),
    required=True,
)
def invalid(p: RuleParams) -> pl.Expr:
    return ~_VALID


def _negative_repair(p: ClipParams) -> Repair:
    x, y = pl.min_horizontal(X, 0.0), pl.min_horizontal(Y, 0.0)
    return Repair(
        fixable=(X >= -p.max_clip_px) & (Y >= -p.max_clip_px),
        columns={
            "bbox_x": pl.max_horizontal(X, 0.0),
            "bbox_y": pl.max_horizontal(Y, 0.0),
            "bbox_w": W + x,
            "bbox_h": H + y,
        },
        note=pl.format("bbox.negative: {} clipped to the image", _BOX),
    )


@register_rule(
    "bbox.negative",
    "the box starts left of or above the image",
    action="clip",
    params=ClipParams,
    detail=lambda p: pl.format("box {}: expected x, y >= 0 (clipped when >= -{})", _BOX, pl.lit(p.max_clip_px)),
    repair=_negative_repair,
)
def negative(p: ClipParams) -> pl.Expr:
    return _VALID & ((X < 0) | (Y < 0))


def _overshoot() -> pl.Expr:
    return pl.max_horizontal(X + W - pl.col("width"), Y + H - pl.col("height"))


def _oob_repair(p: ClipParams) -> Repair:
    return Repair(
        fixable=_overshoot() <= p.max_clip_px,
        columns={
            "bbox_w": pl.min_horizontal(X + W, pl.col("width")) - X,
            "bbox_h": pl.min_horizontal(Y + H, pl.col("height")) - Y,
        },
        note=pl.format("bbox.out_of_bounds: {} clipped to {}x{}", _BOX, pl.col("width"), pl.col("height")),
    )


@register_rule(
    "bbox.out_of_bounds",
    "the box reaches past the right or bottom edge of the decoded image (never only the metadata size)",
    action="clip",
    params=ClipParams,
    detail=lambda p: pl.format(
        "box {}: expected inside the decoded image {}x{} (clipped when <= {} px over)",
        _BOX,
        pl.col("width"),
        pl.col("height"),
        pl.lit(p.max_clip_px),
    ),
    repair=_oob_repair,
)
def out_of_bounds(p: ClipParams) -> pl.Expr:
    return _VALID & pl.col("width").is_not_null() & (_overshoot() > 0)


@register_rule(
    "bbox.empty",
    "the box has width or height <= 0 or below a minimum size",
    action="drop",
    params=MinSizeParams,
    detail=lambda p: pl.format("box {}: expected width and height >= {} px", _BOX, pl.lit(p.min_size)),
)
def empty(p: MinSizeParams) -> pl.Expr:
    return _VALID & ((W <= 0) | (H <= 0) | (W < p.min_size) | (H < p.min_size))
