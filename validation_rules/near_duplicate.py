"""Rule ``image.near_duplicate``: within one video and one label, a frame within ``max_distance`` bits
(64-bit perceptual hash) of a frame kept before it. The comparison is ``validation_rules.perceptual``;
exact byte copies are ``image.duplicate``. By default it warns; with ``action = "drop"`` the repeats
are quarantined, the kept frame and the distance in ``detail``.
"""

from __future__ import annotations

import polars as pl

from pawpipe.validation_rules.perceptual import NearDuplicateParams, mark_near_duplicates
from pawpipe.validation_rules.registry import register_rule


@register_rule(
    "image.near_duplicate",
    "a frame within max_distance bits (perceptual hash) of a frame kept before it, same video and label",
    action="warn",
    params=NearDuplicateParams,
    detail=lambda p: pl.format(
        "image '{}' in group '{}': expected a distinct frame, got perceptual-hash distance {} (max {}) to kept "
        "sample '{}'",
        pl.col("image_path"),
        pl.col("group_id"),
        pl.col("_near_distance"),
        pl.lit(p.max_distance),
        pl.col("_near_keeper"),
    ),
    prepare=mark_near_duplicates,
    prepare_takes_params=True,
)
def near_duplicate(p: NearDuplicateParams) -> pl.Expr:
    return pl.col("_near_keeper").is_not_null()
