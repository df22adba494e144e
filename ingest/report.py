"""The cleaning report: ``report.json`` for machines; ``report.html`` for people (``ingest.report_page``)."""

from __future__ import annotations

import polars as pl

from pawpipe.common.contracts.ingest_tables import BBOX_COLUMNS, listed_splits
from pawpipe.ingest.sources import Parsed
from pawpipe.validation_rules import list_rules, near_duplicate_flags

_EXAMPLES_PER_RULE = 5
NEAR_DUPLICATE_DISTANCES = (2, 4, 8)  # bits of the 64-bit perceptual hash


def build_report(
    *,
    fmt: str,
    parsed: Parsed,
    frame: pl.DataFrame,
    manifest: pl.DataFrame,
    quarantine: pl.DataFrame,
    orphans: pl.DataFrame,
    leaked_groups: list[str],
    grouping: dict,
    config: dict,
) -> dict:
    """Counts and rates that describe one cleaning run; ``records_in == clean + quarantined`` always."""
    active = [r["id"] for r in config["rule_set"]["rules"]]
    rule_hits = _count_list(quarantine, "rule")
    images = frame.filter(pl.col("image_path").is_not_null()).unique("image_path")
    report = {
        "format": fmt,
        "root": config["root"],
        "records_in": frame.height,
        "clean": manifest.height,
        "quarantined": quarantine.height,
        "rules": {rule: rule_hits.get(rule, 0) for rule in list_rules() if rule in active},
        "repairs": _count_list(
            manifest.with_columns(pl.col("repairs").list.eval(pl.element().str.extract(r"^([^:]+):"))), "repairs"
        ),
        "warnings": _count_list(manifest, "warnings"),
        "orphan_images": orphans.height,
        "orphan_examples": orphans.get_column("image_path").head(10).to_list(),
        "images": {
            "distinct": images.height,
            "by_status": _counts(images, "status"),
            "by_format": _counts(images.filter(pl.col("status") == "ok"), "image_format"),
            "by_mode": _counts(images.filter(pl.col("status") == "ok"), "image_mode"),
            "exif_rotated": images.filter(pl.col("orientation").fill_null(1) != 1).height,
        },
        "classes": {"before": _counts(frame, "label"), "after": _counts(manifest, "label")},
        "splits": {
            split: {
                "samples": part.height,
                "groups": part.get_column("group_id").n_unique(),
                "classes": _counts(part, "label"),
            }
            # test is listed when the dataset has test records, even if all of them were quarantined
            for split, part in (
                (s, manifest.filter(pl.col("split") == s)) for s in listed_splits(frame.get_column("split").unique())
            )
        },
        "grouping": grouping,  # which rule made the groups (ingest.grouping), how many, and a warning if any
        "groups_in_both_splits": leaked_groups,
        "label_disagreement": _disagreement(frame)
        if {"owner_emotion", "inspect_emotion"} <= set(frame.columns)
        else None,
        "examples": _examples(quarantine, frame, list(rule_hits)),
        "source_notes": parsed.notes,
        "near_duplicates": near_duplicate_summary(frame, manifest),
    }
    return report


def near_duplicate_summary(frame: pl.DataFrame, manifest: pl.DataFrame) -> dict:
    """How many clean frames repeat a kept frame of their video and label, at a few hash distances.

    Counted in annotation order (as rule ``image.near_duplicate`` visits them) on the clean
    training samples: the share is what leaving them out would save of an epoch.
    """
    train = manifest.filter(pl.col("split") == "train").select("sample_id", "group_id", "label", "dhash")
    ordered = frame.select("sample_id").join(train, on="sample_id", how="inner", maintain_order="left")
    out: dict = {"distances": list(NEAR_DUPLICATE_DISTANCES), "train_samples": ordered.height, "by_distance": {}}
    for d in NEAR_DUPLICATE_DISTANCES:
        flagged = ordered.filter(near_duplicate_flags(ordered, max_distance=d)) if ordered.height else ordered
        out["by_distance"][str(d)] = {
            "near_duplicates": flagged.height,
            "epoch_share_saved": round(flagged.height / max(ordered.height, 1), 4),
            "classes": _counts(flagged, "label"),
        }
    return out


def _examples(quarantine: pl.DataFrame, frame: pl.DataFrame, rules: list[str]) -> dict[str, list[dict]]:
    """Up to ``_EXAMPLES_PER_RULE`` quarantined records per rule, with their box as annotated (for the
    page's thumbnails); every text bounded."""
    boxes = None
    if {"sample_id", *BBOX_COLUMNS} <= set(frame.columns):
        boxes = (
            frame.select("sample_id", *BBOX_COLUMNS)
            .filter(pl.col("sample_id").is_not_null())
            .unique("sample_id", keep="first")
        )
    out = {}
    for rule in rules:
        rows = quarantine.filter(pl.col("rule").list.contains(rule)).head(_EXAMPLES_PER_RULE)
        if boxes is not None:
            rows = rows.join(boxes, on="sample_id", how="left", maintain_order="left")
        else:
            rows = rows.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in BBOX_COLUMNS)
        out[rule] = rows.select(
            "source_file",
            "record",
            pl.col("image_path").str.slice(0, 500),
            pl.col("rule").alias("rules"),
            pl.col("detail").str.slice(0, 500),
            *BBOX_COLUMNS,
        ).to_dicts()
    return out


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    rows = frame.group_by(column).len().sort(column, nulls_last=True).iter_rows()
    return {("(null)" if k is None else _short(str(k))): int(n) for k, n in rows}


def _short(text: str, limit: int = 120) -> str:
    """A value as a report key or example: bounded, since a hostile label can be megabytes."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _count_list(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    exploded = frame.select(pl.col(column).explode()).drop_nulls()
    return _counts(exploded, column)


def _disagreement(frame: pl.DataFrame) -> dict[str, dict]:
    """Per inspector emotion: how many videos the owner labelled differently."""
    videos = frame.filter(pl.col("inspect_emotion").is_not_null()).unique("group_id", keep="first")
    stats = (
        videos.group_by("inspect_emotion")
        .agg(videos=pl.len(), disagree=(pl.col("owner_emotion") != pl.col("inspect_emotion")).fill_null(True).sum())
        .sort("inspect_emotion")
    )
    return {
        _short(row["inspect_emotion"]): {
            "videos": row["videos"],
            "disagree": row["disagree"],
            "rate": round(row["disagree"] / row["videos"], 4),
        }
        for row in stats.iter_rows(named=True)
    }


def what_was_read(notes: dict) -> str:
    """The annotation files a source read, in words, from its report notes."""
    if "annotation_files" in notes and isinstance(notes["annotation_files"], list):
        files = notes["annotation_files"]
        return ", ".join(files[:5]) + (f" ... ({len(files)} files)" if len(files) > 5 else "")
    if "table" in notes:
        return str(notes["table"]) + (f" ({notes['line_ends']}-only line ends)" if notes.get("line_ends") else "")
    count = notes.get("label_files", notes.get("annotation_files"))
    names = f", class names from {notes['names_file']}" if notes.get("names_file") else ""
    return f"{count} label files{names}" if count is not None else "annotations"


# What the terminal adds to a rule's count where the fix is a flag.
RULE_HINTS = {"path.outside_root": " (symlinks that leave the root: --allow-root DIR admits the folder they lead to)"}
