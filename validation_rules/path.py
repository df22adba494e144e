"""Rules about where a path points and what it names: an image path from an annotation, or a label file."""

from __future__ import annotations

import polars as pl

from pawpipe.validation_rules.registry import RuleParams, register_rule

_GATE = pl.col("parse_rule")  # the rule id the label-file gate refused a file under, else null


def _gate_or(rule_id: str, image: pl.Expr) -> pl.Expr:
    """The gate's message for a refused label file, else ``image`` for an image path."""
    return pl.when(_GATE == rule_id).then(pl.col("parse_error")).otherwise(image)


@register_rule(
    "path.outside_root",
    "the image path or label file resolves outside the dataset root (absolute, '..' or a symlink); never opened",
    action="drop",
    detail=lambda p: _gate_or(
        "path.outside_root",
        pl.format(
            "image path '{}': expected a file under the dataset root, got {}", pl.col("image_path"), pl.col("error")
        ),
    ),
    on_unparsed=True,
    required=True,
)
def outside_root(p: RuleParams) -> pl.Expr:
    return (pl.col("status") == "outside_root") | (_GATE == "path.outside_root")


@register_rule(
    "path.not_regular",
    "the image or label file is not a regular file (a FIFO, socket, device or folder); never opened",
    action="drop",
    detail=lambda p: _gate_or(
        "path.not_regular",
        pl.format("image '{}': expected a regular file, got {}; never opened", pl.col("image_path"), pl.col("error")),
    ),
    on_unparsed=True,
    required=True,
)
def not_regular(p: RuleParams) -> pl.Expr:
    return (pl.col("status") == "not_regular") | (_GATE == "path.not_regular")


@register_rule(
    "path.bad_name",
    "a label or image file name is not valid UTF-8 or holds a control character (shown escaped); never opened",
    action="drop",
    detail=lambda p: (
        pl.when(pl.col("parse_error").is_not_null())
        .then(pl.col("parse_error"))
        .otherwise(
            pl.format(
                "image '{}': {}; rename it",
                pl.col("image_path")
                .str.replace_all("\n", "\\n", literal=True)
                .str.replace_all("\r", "\\r", literal=True)
                .str.replace_all("\t", "\\t", literal=True),
                pl.col("error"),
            )
        )
    ),
    on_unparsed=True,
    required=True,
)
def bad_name(p: RuleParams) -> pl.Expr:
    return (_GATE == "path.bad_name") | (pl.col("status") == "bad_name")
