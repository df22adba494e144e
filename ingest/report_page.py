"""``report.html``: the cleaning report as one self-contained page a person would rather look at.

Charts are drawn by matplotlib and inlined as SVG (text kept as text, so the browser's fonts
render the users' Korean class names); bars that are compared share one axis (classes before and
after cleaning; each split, test too when the dataset has one, as shares of the split) and carry
their count next to their percentage. Quarantined examples are shown as thumbnails with the
box drawn on them, the canvas widened when the box leaves the image (the way fiftyone and
cleanvision show them), embedded as data URIs, so the page needs no other file and every image
resolves.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from pathlib import Path

import matplotlib
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageOps

from pawpipe.common.atomic import write_text
from pawpipe.common.fonts import CSS_FONT_FAMILY, chart_rc
from pawpipe.common.images import EXIF_ORIENTATION, TRANSPOSED, to_rgb8

THUMB = 200  # px, the longer side
THUMB_MAX_PIXELS = 40_000_000  # never decode more than this for a thumbnail (a 13000x13000 PNG is 169 M)
THUMB_MAX_BYTES = 64 << 20
# Rules whose image is fine to open: the record failed on its box or label, not on its file.
NO_THUMBNAIL = ("image.", "path.", "annotation.")
OPENABLE_IMAGE_RULES = ("image.duplicate", "image.near_duplicate", "image.size_mismatch")
_CSS = (
    "body{font-family:"
    + CSS_FONT_FAMILY
    + """;max-width:1000px;margin:2em auto;color:#222}
th{text-align:left;padding-right:1em} td.n{text-align:right;font-variant-numeric:tabular-nums;padding-right:1em}
.chart svg{max-width:100%;height:auto} .examples{display:flex;flex-wrap:wrap;gap:10px}
.card{width:220px;border:1px solid #ccc;padding:6px;font-size:12px;word-break:break-all}
.card img{display:block;max-width:100%;margin-bottom:4px} \
.noimg{height:60px;background:#eee;color:#777;text-align:center;line-height:60px}"""
)


def write_html(path: Path, report: dict) -> None:
    """Write ``report.html`` for ``report`` (the ``report.json`` document) atomically."""
    e = html.escape
    records = max(report["records_in"], 1)
    summary = "".join(
        f"<tr><th>{e(name)}</th><td class=n>{value:,}</td><td class=n>{value / records:.1%}</td></tr>"
        for name, value in (
            ("records in", report["records_in"]),
            ("clean", report["clean"]),
            ("quarantined", report["quarantined"]),
        )
    )
    summary += f"<tr><th>orphan images</th><td class=n>{report['orphan_images']:,}</td><td></td></tr>"
    summary += (
        f"<tr><th>groups in both splits</th><td class=n>{len(report['groups_in_both_splits']):,}</td><td></td></tr>"
    )
    grouping = report.get("grouping") or {}
    if grouping:
        summary += (
            f"<tr><th>grouped by</th><td colspan=2>{e(grouping['rule'])}: {grouping['images']:,} images in "
            f"{grouping['groups']:,} groups</td></tr>"
        )
    notes = [grouping.get("warning")] if grouping.get("warning") else []
    if report["groups_in_both_splits"]:
        leaked = report["groups_in_both_splits"]
        notes.append(
            f"the data's own split puts {len(leaked):,} groups in more than one split (frames of one video in train "
            f"and validation): {', '.join(leaked[:20])}{' ...' if len(leaked) > 20 else ''}; "
            f"ingest clean --resplit-by-group splits them by group"
        )
    with matplotlib.rc_context(chart_rc()):  # Latin, then a Hangul font: Korean class names measured and named right
        sections = [
            f"<h1>pawpipe ingest report</h1><p>{e(report['root'])} ({e(report['format'])})</p><table>{summary}</table>",
            "".join(f"<p class=warning><b>warning:</b> {e(n)}</p>" for n in notes),
            _bars("Quarantined records per rule", report["rules"], total=records, of="of records", color="#e45756"),
            _bars(
                "Repairs per rule (kept records)", report["repairs"], total=records, of="of records", color="#f58518"
            ),
            _bars(
                "Warnings per rule (kept records)", report["warnings"], total=records, of="of records", color="#eeca3b"
            ),
            _grouped(
                "Classes before and after cleaning",
                {"before": report["classes"]["before"], "after": report["classes"]["after"]},
            ),
            _grouped(
                "Classes per split (share of the split)",
                {
                    f"{s} ({i['samples']:,} in {i['groups']:,} groups)": i["classes"]
                    for s, i in report["splits"].items()
                },
                shares=True,
            ),
        ]
        if report.get("label_disagreement"):
            rows = report["label_disagreement"]
            sections.append(
                _bars(
                    "Owner vs inspector emotion: videos labelled differently",
                    {k: v["disagree"] for k, v in rows.items()},
                    totals={k: v["videos"] for k, v in rows.items()},
                    of="of the class's videos",
                    color="#b279a2",
                )
            )
        if report.get("near_duplicates"):
            sections.append(_near_duplicates(report["near_duplicates"]))
        sections.append(
            _bars(
                "Image formats",
                report["images"]["by_format"],
                total=max(report["images"]["distinct"], 1),
                of="of images",
                color="#9d755d",
            )
        )
        sections.append(
            _bars(
                "Image modes",
                report["images"]["by_mode"],
                total=max(report["images"]["distinct"], 1),
                of="of images",
                color="#9d755d",
            )
        )
        sections.append(_examples(report))
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pawpipe ingest report</title>'
        f"<style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    write_text(path, page)


# -- charts ------------------------------------------------------------------------------------------
def _figure(height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(9, height), layout="constrained")


def _svg(figure) -> str:
    buffer = io.StringIO()
    # Text stays text (the browser draws it); a fixed id salt and no date: a rerun writes the same bytes.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pawpipe"}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def _bars(
    title: str,
    values: dict[str, int],
    *,
    total: int = 0,
    totals: dict[str, int] | None = None,
    of: str = "",
    color: str = "#4c78a8",
) -> str:
    """Horizontal bars, each labelled ``count (share %)`` of ``total`` (or of its own ``totals[name]``)."""
    head = f"<h2>{html.escape(title)}</h2>"
    if not values:
        return head + "<p>(none)</p>"
    names = list(values)
    figure = _figure(0.45 + 0.32 * len(names))
    ax = figure.subplots()
    bars = ax.barh(range(len(names)), [values[n] for n in names], color=color)
    ax.set_yticks(range(len(names)), [_tick(n) for n in names])
    ax.invert_yaxis()
    labels = []
    for name in names:
        whole = (totals or {}).get(name, total)
        labels.append(f"{values[name]:,} ({values[name] / whole:.1%})" if whole else f"{values[name]:,}")
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set_xlabel(f"count (share {of})" if of else "count")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.25)
    ax.grid(True, axis="x", alpha=0.3)
    return head + f'<div class="chart">{_svg(figure)}</div>'


def _grouped(title: str, series: dict[str, dict[str, int]], *, shares: bool = False) -> str:
    """Grouped horizontal bars on one shared axis: counts, or each series' shares with counts beside."""
    head = f"<h2>{html.escape(title)}</h2>"
    names = sorted({name for values in series.values() for name in values})
    if not names:
        return head + "<p>(none)</p>"
    figure = _figure(0.6 + 0.28 * len(names) * len(series))
    ax = figure.subplots()
    height = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        total = max(sum(values.values()), 1)
        counts = [values.get(n, 0) for n in names]
        widths = [c / total * 100 for c in counts] if shares else counts
        bars = ax.barh([k + i * height for k in range(len(names))], widths, height=height, label=label)
        text = [f"{c:,} ({c / total:.1%})" for c in counts]
        ax.bar_label(bars, labels=text, padding=3, fontsize=8)
    ax.set_yticks([k + height * (len(series) - 1) / 2 for k in range(len(names))], [_tick(n) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("share of the split (%)" if shares else "records")
    if not shares:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.25)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return head + f'<div class="chart">{_svg(figure)}</div>'


def _tick(name: str, limit: int = 40) -> str:
    """An axis label short enough to leave room for the bars (the table and report.json keep the whole)."""
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def _near_duplicates(near: dict) -> str:
    """Per class: near-duplicate training frames at each hash distance, and the epoch share they are."""
    e = html.escape
    dists = [str(d) for d in near["distances"]]
    classes = sorted({c for d in dists for c in near["by_distance"][d]["classes"]})
    head = "".join(f"<th>distance &le; {d}</th>" for d in dists)
    rows = "".join(
        f"<tr><td>{e(c)}</td>"
        + "".join(f"<td class=n>{near['by_distance'][d]['classes'].get(c, 0):,}</td>" for d in dists)
        + "</tr>"
        for c in classes
    )
    total = "".join(f"<td class=n><b>{near['by_distance'][d]['near_duplicates']:,}</b></td>" for d in dists)
    share = "".join(f"<td class=n>{near['by_distance'][d]['epoch_share_saved']:.1%}</td>" for d in dists)
    return (
        "<h2>Near-duplicate training frames (same video and label, of "
        f"{near['train_samples']:,})</h2><table><tr><th>class</th>{head}</tr>{rows}"
        f"<tr><th>all</th>{total}</tr><tr><th>epoch saved</th>{share}</tr></table>"
    )


# -- quarantined examples ------------------------------------------------------------------------------
def _examples(report: dict) -> str:
    e = html.escape
    root = Path(report["root"])
    parts = ["<h2>Quarantined examples</h2>"]
    for rule, rows in report["examples"].items():
        cards = []
        for row in rows:
            uri = thumbnail(root, row) if _openable(row.get("rules") or [rule]) else None
            img = (
                f'<img src="{uri}" alt="{e(str(row.get("image_path")))}">'
                if uri
                else '<div class="noimg">no thumbnail</div>'
            )
            cards.append(
                f'<div class="card">{img}<code>{e(str(row["source_file"]))}</code> [{e(str(row["record"]))}]<br>'
                f"{e(row.get('detail') or '')}</div>"
            )
        parts.append(f"<h3>{e(rule)}</h3><div class=examples>{''.join(cards)}</div>")
    return "".join(parts)


def _openable(rules: list[str]) -> bool:
    """Only images whose file passed its checks are opened (no bombs, FIFOs or files outside the root)."""
    return all(r in OPENABLE_IMAGE_RULES or not r.startswith(NO_THUMBNAIL) for r in rules)


def thumbnail(root: Path, row: dict) -> str | None:
    """A JPEG data URI of the example's image, reduced, with its box drawn in red (None: no image)."""
    image_path = row.get("image_path")
    if not image_path:
        return None
    path = (root / image_path).resolve()
    try:
        if not path.is_relative_to(root.resolve()) or not path.is_file() or path.stat().st_size > THUMB_MAX_BYTES:
            return None
        with Image.open(path) as image:
            width, height = image.size
            if width * height > THUMB_MAX_PIXELS:
                return None
            if image.getexif().get(EXIF_ORIENTATION, 1) in TRANSPOSED:
                width, height = height, width  # boxes are in the frame a viewer shows
            image.draft("RGB", (THUMB, THUMB))  # JPEG: decode at a reduced DCT scale
            picture = to_rgb8(ImageOps.exif_transpose(image))  # as common.images.open_oriented
    except (OSError, ValueError, Image.DecompressionBombError):  # be specific: a bad file shows no thumbnail
        return None
    box = [row.get(k) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
    scale = picture.width / width
    left = top = 0.0
    canvas = picture
    if all(isinstance(v, (int, float)) for v in box):
        x, y, w, h = (float(v) for v in box)
        # widen the canvas to show a box that leaves the image (bounded: at most the image size again per side)
        left, top = min(0.0, max(x, -width)), min(0.0, max(y, -height))
        right, bottom = max(float(width), min(x + w, 2.0 * width)), max(float(height), min(y + h, 2.0 * height))
        size = (round((right - left) * scale), round((bottom - top) * scale))
        if size != picture.size:
            canvas = Image.new("RGB", size, (200, 200, 200))
            canvas.paste(picture, (round(-left * scale), round(-top * scale)))
        draw = ImageDraw.Draw(canvas)
        corners = [((x - left) * scale, (y - top) * scale), ((x + w - left) * scale, (y + h - top) * scale)]
        (x0, y0), (x1, y1) = corners
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=(230, 20, 20), width=2)
    canvas.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
