"""Annotator disagreement: two labels for one sample that differ (AI Hub's owner vs inspector emotion).

AI Hub records keep both emotions as manifest columns (``owner_emotion``, ``inspect_emotion``; the
source's extra columns, see ``ingest.sources.aihub.EXTRA_COLUMNS``). Where both are present and
differ, the sample's label is contested: a signal of its own, independent of any model. Sources
with one label give null (no evidence either way).
"""

from __future__ import annotations

import polars as pl

PAIRS = (("owner_emotion", "inspect_emotion"),)


def disagreement(manifest: pl.DataFrame) -> pl.DataFrame:
    """Per sample: ``annotators_disagree`` (bool or null) and ``other_label`` (the second annotator's
    label when it differs from the given one, else null)."""
    pair = next((p for p in PAIRS if all(c in manifest.columns for c in p)), None)
    if pair is None:
        return manifest.select(
            "sample_id", annotators_disagree=pl.lit(None, pl.Boolean), other_label=pl.lit(None, pl.String)
        )
    a, b = (pl.col(c).str.strip_chars() for c in pair)
    both = a.is_not_null() & b.is_not_null()
    other = pl.when(a != pl.col("label")).then(a).when(b != pl.col("label")).then(b)
    return manifest.select(
        "sample_id",
        annotators_disagree=pl.when(both).then(a != b),
        other_label=pl.when(both & (a != b)).then(other),
    )
