"""The cleaning report: ``report.json`` for machines, ``report.html`` (inline SVG charts) for people."""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl

from ingest.atomic import write_text
from ingest.sources import Parsed
from validation_rules.registry import list_rules

_EXAMPLES_PER_RULE = 5


def build_report(
    *,
    fmt: str,
    parsed: Parsed,
    frame: pl.DataFrame,
    manifest: pl.DataFrame,
    quarantine: pl.DataFrame,
    orphans: pl.DataFrame,
    leaked_groups: list[str],
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
        "repairs": _count_list(manifest.with_columns(pl.col("repairs").list.eval(pl.element().str.extract(r"^([^:]+):"))), "repairs"),
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
            split: {"samples": part.height, "groups": part.get_column("group_id").n_unique(), "classes": _counts(part, "label")}
            for split, part in ((s, manifest.filter(pl.col("split") == s)) for s in ("train", "val"))
        },
        "groups_in_both_splits": leaked_groups,
        "label_disagreement": _disagreement(frame) if {"owner_emotion", "inspect_emotion"} <= set(frame.columns) else None,
        "examples": {
            rule: quarantine.filter(pl.col("rule").list.contains(rule))
            .head(_EXAMPLES_PER_RULE)
            .select("source_file", "record", "detail")
            .to_dicts()
            for rule in rule_hits
        },
        "source_notes": parsed.notes,
    }
    return report


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    rows = frame.group_by(column).len().sort(column, nulls_last=True).iter_rows()
    return {("(null)" if k is None else str(k)): int(n) for k, n in rows}


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
        row["inspect_emotion"]: {"videos": row["videos"], "disagree": row["disagree"], "rate": round(row["disagree"] / row["videos"], 4)}
        for row in stats.iter_rows(named=True)
    }


def _bars(title: str, values: dict[str, float], *, color: str = "#4c78a8", fmt: str = "{:g}") -> str:
    """A horizontal bar chart as inline SVG (no plotting dependency)."""
    if not values:
        return f"<h3>{html.escape(title)}</h3><p>(none)</p>"
    top = max(values.values()) or 1
    row, label_w, bar_w = 22, 220, 420
    parts = [f'<svg width="{label_w + bar_w + 90}" height="{row * len(values) + 10}" role="img" aria-label="{html.escape(title)}">']
    for i, (name, value) in enumerate(values.items()):
        y = 5 + i * row
        w = bar_w * value / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{html.escape(fmt.format(value))}</text>'
        )
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def write_html(path: Path, report: dict) -> None:
    """A one-page report a person would rather look at than read."""
    before, after = report["classes"]["before"], report["classes"]["after"]
    sections = [
        f"<h1>pawpipe ingest report</h1><p>{html.escape(report['root'])} ({report['format']})</p>",
        "<table>"
        + "".join(
            f"<tr><th>{k}</th><td>{report[k]}</td></tr>"
            for k in ("records_in", "clean", "quarantined", "orphan_images")
        )
        + f"<tr><th>groups in both splits</th><td>{len(report['groups_in_both_splits'])}</td></tr></table>",
        _bars("Quarantined records per rule", {k: v for k, v in report["rules"].items()}, color="#e45756"),
        _bars("Repairs per rule (kept)", report["repairs"], color="#f58518"),
        _bars("Warnings per rule (kept)", report["warnings"], color="#eeca3b"),
        _bars("Classes before cleaning", before),
        _bars("Classes after cleaning", after, color="#54a24b"),
    ]
    for split, info in report["splits"].items():
        sections.append(_bars(f"{split}: {info['samples']} samples in {info['groups']} groups", info["classes"], color="#72b7b2"))
    if report.get("label_disagreement"):
        rates = {k: v["rate"] * 100 for k, v in report["label_disagreement"].items()}
        sections.append(_bars("Owner vs inspector emotion disagreement (% of videos)", rates, color="#b279a2", fmt="{:.1f} %"))
    sections.append(_bars("Image formats", report["images"]["by_format"], color="#9d755d"))
    sections.append(_bars("Image modes", report["images"]["by_mode"], color="#9d755d"))
    examples = "".join(
        f"<h4>{html.escape(rule)}</h4><ul>"
        + "".join(f"<li><code>{html.escape(str(e['source_file']))}</code> [{html.escape(str(e['record']))}]: {html.escape(e['detail'] or '')}</li>" for e in rows)
        + "</ul>"
        for rule, rows in report["examples"].items()
    )
    sections.append(f"<h2>Examples</h2>{examples}")
    style = "body{font-family:sans-serif;max-width:900px;margin:2em auto}svg text{font-size:12px}th{text-align:left;padding-right:1em}"
    page = f'<!doctype html><html><head><meta charset="utf-8"><title>pawpipe ingest report</title><style>{style}</style></head><body>{"".join(sections)}</body></html>\n'
    write_text(path, page)
