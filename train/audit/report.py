"""The audit report: ``audit.html`` with the top suspects as images cut from the shards, the estimated
noise matrix, per-class noise rates and how the signals agree (PNGs drawn with matplotlib)."""

from __future__ import annotations

import html
import logging
import tarfile
from pathlib import Path

import numpy as np
import polars as pl

from pawpipe.common.atomic import write_bytes, write_text
from pawpipe.common.contracts.shard_tables import SAMPLES_FILE
from pawpipe.common.contracts.tar_layout import JPG, member_name
from pawpipe.common.fonts import CSS_FONT_FAMILY, chart_names, chart_rc

log = logging.getLogger(__name__)


def _figure_png(path: Path, draw) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context(chart_rc()):  # the class names' Hangul from a CJK font, Latin from DejaVu Sans
        fig = draw(plt)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _noise_matrix(plt, matrix: np.ndarray, names: list[str]):
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    im = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("true class (estimated)")
    ax.set_ylabel("given label")
    ax.set_title("noise matrix p(given | true)")
    fig.colorbar(im, ax=ax)
    return fig


def _noise_rates(plt, rates: list[float], names: list[str]):
    fig, ax = plt.subplots(figsize=(1.0 * len(names) + 2, 3))
    ax.bar(range(len(names)), rates, color="#c0504d")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("share of the class's labels")
    ax.set_title("estimated label noise per class")
    return fig


def _agreement(plt, counts: list[tuple[str, int]]):
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(counts) + 1))
    ax.barh(range(len(counts)), [c for _, c in counts], color="#4f81bd")
    ax.set_yticks(range(len(counts)), [n for n, _ in counts])
    ax.invert_yaxis()
    ax.set_xlabel("samples")
    ax.set_title("which signals flag a sample")
    return fig


def signal_agreement(suspects: pl.DataFrame) -> list[tuple[str, int]]:
    """Counts of each combination of flags (AUM, confident learning, annotators, never learned), largest first."""
    flags = suspects.select(
        AUM=(pl.col("aum") <= pl.col("aum_cutoff")).fill_null(False),
        CL=pl.col("cl_issue").fill_null(False),
        annotators=pl.col("annotators_disagree").fill_null(False),
        never_learned=pl.col("never_learned").fill_null(False),
    )
    names = flags.columns
    combo = flags.select(
        pl.concat_str([pl.when(pl.col(n)).then(pl.lit(n)) for n in names], separator=" + ", ignore_nulls=True)
    )
    counts = combo.to_series().replace("", "none").value_counts(sort=True)
    return [(str(a), int(b)) for a, b in counts.iter_rows()]


def cut_gallery(out: Path, ids: list[str], *, shards: Path | None, split: str) -> dict[str, str]:
    """The shard JPEGs of ``ids`` copied to ``out/gallery/``; sample_id -> relative path (missing ones left out)."""
    if shards is None or not (shards / split / SAMPLES_FILE).is_file():
        log.warning("no shards at %s: the gallery is left out", shards)
        return {}
    where = pl.read_parquet(shards / split / SAMPLES_FILE).filter(pl.col("sample_id").is_in(ids))
    found: dict[str, str] = {}
    for shard, rows in where.group_by("shard"):
        try:
            with tarfile.open(shards / split / str(shard[0])) as tar:
                for sample_id, key in rows.select("sample_id", "key").iter_rows():
                    member = tar.extractfile(member_name(key, JPG))
                    if member is not None:
                        write_bytes(out / "gallery" / f"{sample_id}.jpg", member.read())
                        found[sample_id] = f"gallery/{sample_id}.jpg"
        except (
            OSError,
            KeyError,
            tarfile.TarError,
        ) as exc:  # be specific: a missing or damaged shard costs its images only
            log.warning("%s: cannot cut gallery images: %s", shards / split / str(shard[0]), exc)
    return found


VIDEO_STRIP = 8  # frames shown per suspect video, spread over the video


def _video_strips(
    out: Path, suspects: pl.DataFrame, groups: pl.DataFrame, *, shards: Path | None, split: str, videos: int
) -> str:
    """The suspect videos as strips of their frames, with the group's evidence (most suspect first)."""
    e = html.escape
    top = groups.filter(pl.col("group_verdict") != "ok").head(videos)
    if top.is_empty():
        return "<p>none</p>"
    frames = suspects.filter(pl.col("group_id").is_in(top.get_column("group_id").implode())).sort(
        "group_id", "image_path"
    )
    shown = {
        g: ids[:: max(1, -(-len(ids) // VIDEO_STRIP))][:VIDEO_STRIP]
        for g, ids in frames.group_by("group_id", maintain_order=True).agg(pl.col("sample_id")).iter_rows()
    }
    images = cut_gallery(out, [i for ids in shown.values() for i in ids], shards=shards, split=split)
    rows = []
    for row in top.iter_rows(named=True):
        strip = "".join(
            f'<img src="{e(images[i])}" alt="">' if i in images else "<span class=noimg></span>"
            for i in shown.get(row["group_id"], [])
        )
        rows.append(
            f'<div class="video {e(row["group_verdict"])}"><div><b>#{row["group_rank"]}</b> {e(row["group_verdict"])} '
            f"<code>{e(str(row['group_id']))}</code>: {row['frames']} frames, "
            f"given <b>{e(str(row['label']))}</b> &rarr; suggested "
            f"<b>{e(str(row['group_suggested_label']))}</b><br><small>{e(row['group_reason'])}</small></div>"
            f'<div class="strip">{strip}</div></div>'
        )
    return "".join(rows)


def write_report(
    out: Path,
    suspects: pl.DataFrame,
    summary: dict,
    *,
    shards: Path | None,
    split: str,
    gallery: int,
    groups: pl.DataFrame | None = None,
) -> Path:
    names = chart_names(
        summary["vocabulary"]
    )  # class ids where no installed font draws them (the page's table maps them)
    cl = summary["confident_learning"]
    agreement = signal_agreement(suspects)
    _figure_png(out / "noise_matrix.png", lambda plt: _noise_matrix(plt, np.array(cl["noise_matrix"]), names))
    _figure_png(out / "noise_rates.png", lambda plt: _noise_rates(plt, cl["noise_rate"], names))
    _figure_png(out / "signals.png", lambda plt: _agreement(plt, agreement))
    top = suspects.filter(pl.col("verdict") != "ok").head(gallery)
    images = cut_gallery(out, top.get_column("sample_id").to_list(), shards=shards, split=split)
    e = html.escape
    cards = []
    for row in top.iter_rows(named=True):
        img = (
            f'<img src="{e(images[row["sample_id"]])}" alt="">'
            if row["sample_id"] in images
            else "<div class=noimg>no image</div>"
        )
        aum = "-" if row["aum"] is None else f"{row['aum']:.2f}"
        conf = "-" if row["self_confidence"] is None else f"{row['self_confidence']:.2f}"
        cards.append(
            f'<div class="card {e(row["verdict"])}">{img}<div><b>#{row["rank"]}</b> {e(row["verdict"])}<br>'
            f"given <b>{e(str(row['label']))}</b> &rarr; suggested <b>{e(str(row['suggested_label']))}</b><br>"
            f"AUM {aum} &middot; p(given) {conf}<br><code>{e(row['sample_id'])}</code>"
            f"<br><small>{e(row['reason'])}</small></div></div>"
        )
    videos = ""
    if groups is not None and groups.height:
        g = summary["groups"]
        videos = (
            f"<h2>Suspect videos</h2><p>{g['groups']} videos of two or more frames, judged by {e(g['view'])}: "
            f"<b>{g['verdicts']['label_issue']}</b> label issues, {g['verdicts']['ambiguous']} ambiguous. Review a "
            f"whole video: <code>train audit --review {e(str(out))} --accept-group GROUP ... --reject-group GROUP "
            "...</code></p>"
            + (
                _video_strips(out, suspects, groups, shards=shards, split=split, videos=max(1, gallery // 4))
                if gallery
                else ""
            )
        )
    v = summary["verdicts"]
    rows = "".join(f"<tr><td>{e(n)}</td><td>{c}</td></tr>" for n, c in agreement)
    classes = "".join(
        f"<tr><td>{i}</td><td>{e(n)}</td><td>{t:.3f}</td><td>{r:.1%}</td></tr>"
        for i, (n, t, r) in enumerate(zip(summary["vocabulary"], cl["thresholds"], cl["noise_rate"], strict=True))
    )
    classes = "<tr><th>id</th><th>class</th><th>threshold</th><th>est. noise</th></tr>" + classes
    view = ""
    if summary.get("view"):
        view = (
            f"; where {e(summary['view'])} trained on the sample, its AUM with cut-off "
            f"{summary['view_aum_cutoff']:.3f}, and {summary['out_of_sample']} samples it never fitted judged by its "
            "view alone"
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>label audit</title><style>
body{{font-family:{CSS_FONT_FAMILY};margin:1.5em;max-width:1200px}} .grid{{display:flex;flex-wrap:wrap;gap:10px}}
.card{{width:220px;border:1px solid #ccc;padding:6px;font-size:13px}} .card img{{width:100%}}
.label_issue{{border-color:#c0504d;border-width:2px}} .noimg{{height:120px;background:#eee}} td{{padding:2px 8px}}
.video{{border:1px solid #ccc;padding:6px;margin:8px 0;font-size:13px}} \
.strip img,.strip .noimg{{height:96px;margin-right:3px;display:inline-block;width:96px}}
</style></head><body><h1>Label audit</h1>
<p>{summary["samples"]} training samples: <b>{v["label_issue"]}</b> label issues, \
{v["ambiguous"]} ambiguous, {v["ok"]} ok.
AUM cut-off {summary["aum_cutoff"]:.3f} ({e(summary["aum_cutoff_from"])}){view}; \
confident learning on {e(cl["probabilities"])}
flags {cl["issues"]}.</p>
<p>Review: <code>train audit --review {e(str(out))} --accept ID ... --reject ID ...</code> records decisions in
<code>decisions.parquet</code>; <code>ingest clean RAW --out OUT --suspects {e(str(out))}</code> applies them.</p>
{videos}
<h2>Top suspects</h2><div class="grid">{"".join(cards) or "<p>none</p>"}</div>
<h2>Estimated noise</h2><img src="noise_matrix.png" alt="noise matrix"> <img src="noise_rates.png" alt="noise rates">
<table>{classes}</table>
<h2>Signal agreement</h2><img src="signals.png" alt="signal agreement"><table>{rows}</table>
</body></html>
"""
    write_text(out / "audit.html", page)
    return out / "audit.html"
