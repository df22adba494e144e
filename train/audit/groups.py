"""A verdict per video: the frames' evidence aggregated over each group, then judged at the group level.

The users' labels come per video (an AI Hub record carries one owner's and one inspector's emotion
for the whole video), so a wrong label is a whole wrong video, and a run that trained on it vouches
for it: the frame verdicts of one run miss it. The group verdict reads a view that never fitted the
group's label (the neighbour view of ``train.audit.neighbours``, out-of-fold probabilities of ``train
crossval`` with folds by group, or their mean when both are at hand) and aggregates it over the
group's frames, as evidence, not as votes of frame verdicts:

* ``group_probs``: the mean of the frames' probability vectors;
* ``mean_log_p_given``: the mean log-probability of the given label over the frames;
* ``other_share``: the share of frames whose most probable class is another one.

Confident learning (``train.audit.confident``) then runs on the groups, one row each: per-class
thresholds and the noise counts come from the groups themselves, so the cut-off is learned from
the data, never a count. A group is a ``label_issue`` where the two readings of the evidence agree:
confident learning flags it **and** most of its frames see another class as the most probable
(``other_share`` above one half: a video whose frames mostly bear its label out is not a wrong
video, whatever a few frames show; on the demo, whose planted flips are single frames inside rightly
labelled videos, confident learning alone flagged videos three quarters of whose frames agreed). One
that only one of them flags, or whose most probable class is another, or whose annotators disagree,
is ``ambiguous``; else ``ok``. The annotators' disagreement
only raises a group within its verdict (it is listed first), it never decides alone. Only a group
whose frames carry one label has a label per video to judge: a group of one image, or one whose
frames were labelled differently (labels per frame), has no group verdict (null), and its frame
verdicts are the judgement.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pawpipe.train.audit.combine import VERDICTS
from pawpipe.train.audit.confident import find_label_issues

GROUPS = (
    "group_rank",
    "group_id",
    "label",
    "frames",
    "group_verdict",
    "group_suggested_label",
    "mean_log_p_given",
    "other_share",
    "group_self_confidence",
    "group_cl_issue",
    "mean_aum",
    "model_doubt_share",
    "annotators_disagree",
    "other_label",
    "group_reason",
)


def judge_groups(frames: pl.DataFrame, probs: np.ndarray, vocabulary: list[str]) -> pl.DataFrame:
    """``frames``: one row per training sample (``group_id``, ``label``, ``label_id``, ``aum``, ``model_label``,
    ``annotators_disagree``, ``other_label``); ``probs``: its out-of-sample view, row for row. One row per group
    of two or more frames that all carry one label (``GROUPS`` columns), most suspect first."""
    logp = np.log(
        np.clip(probs[np.arange(len(probs)), frames.get_column("label_id").fill_null(0).to_numpy()], 1e-12, None)
    )
    per_frame = frames.select(
        "group_id",
        "label",
        "label_id",
        "aum",
        "annotators_disagree",
        "other_label",
        model_doubts=(pl.col("model_label") != pl.col("label")).cast(pl.Float64),
        log_p=pl.Series(logp),
        other=pl.Series(probs.argmax(axis=1)) != pl.col("label_id"),
        _row=pl.int_range(pl.len()),
    ).filter(pl.col("label_id").is_not_null() & pl.col("group_id").is_not_null())
    grouped = (
        per_frame.group_by("group_id")
        .agg(
            frames=pl.len(),
            label=pl.col("label").mode().sort().first(),
            label_id=pl.col("label_id").mode().sort().first(),
            mean_log_p_given=pl.col("log_p").mean(),
            other_share=pl.col("other").cast(pl.Float64).mean(),
            mean_aum=pl.col("aum").mean(),
            model_doubt_share=pl.col("model_doubts").mean(),
            annotators_disagree=pl.col("annotators_disagree").fill_null(False).any(),
            other_label=pl.col("other_label").drop_nulls().first(),
            rows=pl.col("_row"),
            given_labels=pl.col("label_id").n_unique(),
        )
        .filter((pl.col("frames") >= 2) & (pl.col("given_labels") == 1))
        .sort("group_id")
    )
    if grouped.is_empty():
        return pl.DataFrame(schema={**{c: pl.String for c in GROUPS}, "group_rank": pl.Int64, "frames": pl.UInt32})
    group_probs = np.stack([probs[rows].mean(axis=0) for rows in grouped.get_column("rows").to_list()])
    labels = grouped.get_column("label_id").to_numpy()
    cl = find_label_issues(group_probs, labels)
    top = group_probs.argmax(axis=1)
    out = grouped.with_columns(
        group_cl_issue=pl.Series(cl.issues),
        group_self_confidence=pl.Series(cl.self_confidence),
        group_suggested_label=pl.Series([vocabulary[i] for i in cl.suggested]),
        _top=pl.Series([vocabulary[i] for i in top]),
    )
    flagged, other_top, most = pl.col("group_cl_issue"), pl.col("_top") != pl.col("label"), pl.col("other_share") > 0.5
    out = out.with_columns(
        group_verdict=pl.when(flagged & most)
        .then(pl.lit("label_issue"))
        .when(flagged | most | other_top | pl.col("annotators_disagree"))
        .then(pl.lit("ambiguous"))
        .otherwise(pl.lit("ok")),
        group_reason=pl.concat_str(
            [
                pl.format(
                    "{} frames: mean log p(given) {}, {} of the frames see another class most likely",
                    pl.col("frames"),
                    pl.col("mean_log_p_given").round(3),
                    (pl.col("other_share") * 100).round(0).cast(pl.Int64).cast(pl.String) + "%",
                ),
                pl.when(flagged).then(
                    pl.format(
                        "confident learning over the videos: p(given) {} with {} more likely",
                        pl.col("group_self_confidence").round(3),
                        pl.col("group_suggested_label"),
                    )
                ),
                pl.when(pl.col("annotators_disagree")).then(
                    pl.format("annotators disagree ({} vs {})", pl.col("label"), pl.col("other_label"))
                ),
            ],
            separator="; ",
            ignore_nulls=True,
        ),
    )
    out = out.with_columns(
        group_suggested_label=pl.when(pl.col("group_verdict") == "ok")
        .then(pl.col("label"))
        .otherwise(pl.col("group_suggested_label"))
    )
    order = pl.col("group_verdict").replace_strict({v: i for i, v in enumerate(VERDICTS)}, return_dtype=pl.Int8)
    out = out.sort(order, ~pl.col("annotators_disagree"), "mean_log_p_given", "group_id")
    return out.with_columns(group_rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int64)).select(GROUPS)
