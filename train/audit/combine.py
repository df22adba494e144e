"""One verdict per training sample from the signals: a combined rank, ``label_issue | ambiguous | ok``, and why.

The signals with a cut-off learned from the data:

* the **model's view**: its most probable class is not the given label (out-of-fold or eval-mode
  probabilities, ``train.audit.audit``);
* the **training dynamics' view**: the AUM at or below its cut-off (threshold-sample runs, or
  calibrated against the model's view, positive-unlabelled: ``train.audit.aum``);
* **confident learning**'s prune-by-noise-rate issue (``train.audit.confident``).

A ``label_issue`` is where the views agree: the model prefers another class **and** the AUM is at
or below its cut-off. Where the model's view is **out of sample** (column ``out_of_sample``: the
model never trained on the sample with its given label: out-of-fold probabilities of ``train
crossval``, or a later run's view of a sample it was not trained on, ``--view``), it needs no second
opinion: the model doubting or confident learning flagging the sample is a ``label_issue`` on its
own (the AUM comes from a run that did fit the label, and misses a whole mislabelled video, which
that run learned). One signal alone, the annotators disagreeing, or a sample never learned make it
``ambiguous``; else ``ok``.

Why both views of one run: each flags clean samples the other clears. The model's eval-mode view
doubts clean samples it merely gets wrong (a weak model's errors), which the training dynamics had
learned (AUM above the cut-off); the AUM is low for clean samples that are slow to learn, which the
model ends up getting right. On the noise bench's default data (``bench/noise_bench.py``, the
saved results cited in docs/audit.md) the verdict's precision is above either view's alone. The
combined rank orders every sample by the mean of its per-signal ranks (most suspect first), so a
reviewer who works down the list meets the strongest evidence first.
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
    ``model_label``, ``suggested_label`` and optionally ``out_of_sample`` (null values allowed; no
    column: in sample). Adds ``suspect_score``, ``rank`` (1 = most suspect), ``verdict``, ``reason``.
    ``out_of_sample``: ``model_label`` and the confident learning columns come from a model that
    never fitted the sample's label (see the module docstring)."""
    aum_flag = (pl.col("aum") <= pl.col("aum_cutoff")).fill_null(False)
    cl_flag = pl.col("cl_issue").fill_null(False)
    disagree = pl.col("annotators_disagree").fill_null(False)
    never = pl.col("never_learned").fill_null(False)
    model_doubts = (pl.col("model_label") != pl.col("label")).fill_null(False)
    held_out = pl.col("out_of_sample").fill_null(False) if "out_of_sample" in signals.columns else pl.lit(False)
    score = pl.mean_horizontal(
        _rank(-pl.col("aum")),
        _rank(-pl.col("self_confidence")),
        _rank(pl.col("forgetting_score")),
        _rank(pl.col("annotators_disagree").cast(pl.Float64)),
    )
    parts = [
        pl.when(aum_flag).then(
            pl.format("AUM {} at or below the cut-off {}", pl.col("aum").round(3), pl.col("aum_cutoff").round(3))
        ),
        pl.when(cl_flag).then(
            pl.format(
                "confident learning: p(given) {} with {} more likely",
                pl.col("self_confidence").round(3),
                pl.col("suggested_label"),
            )
        ),
        pl.when(disagree).then(pl.format("annotators disagree ({} vs {})", pl.col("label"), pl.col("other_label"))),
        pl.when(never).then(pl.lit("never learned in training")),
        pl.when(model_doubts & ~cl_flag).then(
            pl.format("the model's most probable class is {}", pl.col("model_label"))
        ),
    ]
    reason = pl.concat_str(parts, separator="; ", ignore_nulls=True)
    out = signals.with_columns(
        suspect_score=score,
        verdict=pl.when((held_out & (model_doubts | cl_flag)) | (~held_out & model_doubts & aum_flag))
        .then(pl.lit("label_issue"))
        .when(aum_flag | model_doubts | cl_flag | disagree | never)
        .then(pl.lit("ambiguous"))
        .otherwise(pl.lit("ok")),
        reason=pl.when(reason == "").then(pl.lit("no signal flags it")).otherwise(reason),
    )
    order = pl.col("verdict").replace_strict({v: i for i, v in enumerate(VERDICTS)}, return_dtype=pl.Int8)
    out = out.sort(order, -pl.col("suspect_score"), "sample_id", nulls_last=True)
    return out.with_columns(rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
