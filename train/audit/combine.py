"""One verdict per training sample from the signals: a combined rank, ``label_issue | ambiguous | ok``, and why.

The two signals that carry a cut-off learned from the data decide: the AUM at or below its
cut-off (threshold samples or the mixture, ``train.audit.aum``) or a confident-learning label
issue (per-class thresholds and the estimated joint, ``train.audit.confident``) -> ``label_issue``.
A sample neither calls but that the other evidence doubts (annotators disagree, never learned,
or the model's own most probable class is another one) -> ``ambiguous``; else ``ok``. The union
rather than the intersection: on planted noise (bench/noise_bench.py) the AUM cut-off alone
recovers most flips, and confident learning on in-sample probabilities is precise but finds few,
so requiring both halves the recall for a small gain in precision. The combined rank orders
every sample by the mean of its per-signal ranks (most suspect first), so a reviewer who works
down the list meets the strongest evidence first.
"""

from __future__ import annotations

import polars as pl

VERDICTS = ("label_issue", "ambiguous", "ok")


def _rank(expr: pl.Expr) -> pl.Expr:
    """Rank in [0, 1], 1 = most suspect (nulls: 0.5, no evidence either way)."""
    return (expr.rank("average") / expr.count()).fill_null(0.5)


def combine(signals: pl.DataFrame) -> pl.DataFrame:
    """``signals``: one row per sample with ``aum``, ``aum_cutoff``, ``cl_issue``, ``self_confidence``,
    ``forgetting_score``, ``never_learned``, ``annotators_disagree``, ``other_label``, ``label``,
    ``model_label``, ``suggested_label`` (null values allowed). Adds ``suspect_score``, ``rank``
    (1 = most suspect), ``verdict``, ``reason``."""
    aum_flag = (pl.col("aum") <= pl.col("aum_cutoff")).fill_null(False)
    cl_flag = pl.col("cl_issue").fill_null(False)
    disagree = pl.col("annotators_disagree").fill_null(False)
    never = pl.col("never_learned").fill_null(False)
    model_doubts = (pl.col("model_label") != pl.col("label")).fill_null(False)
    score = pl.mean_horizontal(
        _rank(-pl.col("aum")), _rank(-pl.col("self_confidence")), _rank(pl.col("forgetting_score")),
        _rank(pl.col("annotators_disagree").cast(pl.Float64)),
    )  # fmt: skip
    parts = [
        pl.when(aum_flag).then(pl.format("AUM {} at or below the cut-off {}", pl.col("aum").round(3), pl.col("aum_cutoff").round(3))),
        pl.when(cl_flag).then(pl.format("confident learning: p(given) {} with {} more likely",
                                        pl.col("self_confidence").round(3), pl.col("suggested_label"))),  # fmt: skip
        pl.when(disagree).then(pl.format("annotators disagree ({} vs {})", pl.col("label"), pl.col("other_label"))),
        pl.when(never).then(pl.lit("never learned in training")),
        pl.when(model_doubts & ~cl_flag).then(pl.format("the model's most probable class is {}", pl.col("model_label"))),
    ]
    reason = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    out = signals.with_columns(
        suspect_score=score,
        verdict=pl.when(aum_flag | cl_flag)
        .then(pl.lit("label_issue"))
        .when(disagree | never | model_doubts)
        .then(pl.lit("ambiguous"))
        .otherwise(pl.lit("ok")),
        reason=pl.when(reason == "").then(pl.lit("no signal flags it")).otherwise(reason),
    )
    order = pl.col("verdict").replace_strict({v: i for i, v in enumerate(VERDICTS)}, return_dtype=pl.Int8)
    out = out.sort(order, -pl.col("suspect_score"), "sample_id", nulls_last=True)
    return out.with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
