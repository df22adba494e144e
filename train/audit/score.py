"""Scoring an audit against known noise: precision, recall and F1 of what it flags, per signal.

For data with planted flips (``ingest demo-data --label-noise`` writes ``planted_flips.csv``
beside the dataset; ``bench/noise_bench.py``, ``make demo``): the truth is matched to the
suspects by ``image_path``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

SIGNALS = {
    "label_issue (the verdict)": pl.col("verdict") == "label_issue",
    "label_issue or ambiguous": pl.col("verdict") != "ok",
    "label_issue of frame or video": (pl.col("verdict") == "label_issue")
    | (pl.col("group_verdict") == "label_issue").fill_null(False),
    "the video's verdict": pl.col("group_verdict") == "label_issue",
    "neighbours prefer another class": pl.col("neighbour_label") != pl.col("label"),
    "AUM at or below the cut-off": pl.col("aum") <= pl.col("aum_cutoff"),
    "the model prefers another class": pl.col("model_label") != pl.col("label"),
    "confident learning": pl.col("cl_issue"),
    "never learned (forgetting)": pl.col("never_learned"),
    "annotators disagree": pl.col("annotators_disagree"),
}


def score_audit(suspects: pl.DataFrame, planted: pl.DataFrame) -> pl.DataFrame:
    """One row per signal: flagged, true positives, precision, recall, F1 against ``planted`` (``image_path``)."""
    truth = suspects.select(pl.col("image_path").is_in(planted.get_column("image_path").implode()).alias("planted"))
    frame = suspects.with_columns(truth)
    total = int(frame.get_column("planted").sum())
    rows = []
    for name, expr in SIGNALS.items():
        flagged = frame.filter(expr.fill_null(False))
        tp = int(flagged.get_column("planted").sum())
        p = tp / flagged.height if flagged.height else 0.0
        r = tp / total if total else 0.0
        rows.append(
            {
                "signal": name,
                "flagged": flagged.height,
                "true_positives": tp,
                "precision": p,
                "recall": r,
                "f1": 2 * p * r / (p + r) if p + r else 0.0,
            }
        )
    return pl.DataFrame(rows)


def score_groups(suspects: pl.DataFrame, planted: pl.DataFrame) -> dict:
    """The video verdict against planted videos: a video is planted when most of its training frames are,
    flagged when its ``group_verdict`` is ``label_issue``; precision, recall and F1 over videos (groups of 2+
    frames)."""
    videos = (
        suspects.filter(pl.col("group_verdict").is_not_null())
        .with_columns(planted=pl.col("image_path").is_in(planted.get_column("image_path").implode()))
        .group_by("group_id")
        .agg(planted=pl.col("planted").mean() > 0.5, flagged=(pl.col("group_verdict") == "label_issue").any())
    )
    tp = videos.filter(pl.col("planted") & pl.col("flagged")).height
    flagged, total = int(videos.get_column("flagged").sum()), int(videos.get_column("planted").sum())
    p, r = (tp / flagged if flagged else 0.0), (tp / total if total else 0.0)
    return {
        "videos": videos.height,
        "planted": total,
        "flagged": flagged,
        "true_positives": tp,
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
    }


def format_scores(scores: pl.DataFrame, *, planted: int) -> str:
    lines = [f"{'signal':<30} {'flagged':>7} {'precision':>9} {'recall':>7} {'F1':>6}   ({planted} planted flips)"]
    for r in scores.iter_rows(named=True):
        lines.append(f"{r['signal']:<30} {r['flagged']:>7} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f}")
    return "\n".join(lines)


def score_files(audit: str | Path, planted: str | Path) -> tuple[pl.DataFrame, int]:
    suspects = pl.read_parquet(Path(audit) / "suspects.parquet")
    truth = pl.read_csv(planted)
    known = truth.join(suspects.select("image_path"), on="image_path", how="semi").height
    return score_audit(suspects, truth), known
