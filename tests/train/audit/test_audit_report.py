"""The audit report with the users' Korean class names: the PNG charts draw the names (no tofu), and
the page lays them out with a Hangul font in a real headless Chromium."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import polars as pl
from _browser import check_page, chromium

from pawpipe.common import fonts
from pawpipe.train.audit.report import write_report

NAMES = ["행복/즐거움", "편안/안정", "당황/놀람", "분노/짜증", "불안/걱정", "상처/슬픔"]
PNGS = ("noise_matrix.png", "noise_rates.png", "signals.png")


def write_korean_audit(out: Path) -> Path:
    """``write_report`` on six suspects, one per class, the way ``run_audit`` calls it (no shards: no gallery)."""
    k = len(NAMES)
    suspects = pl.DataFrame(
        {
            "rank": list(range(1, k + 1)),
            "sample_id": [f"s{i}" for i in range(k)],
            "label": NAMES,
            "suggested_label": NAMES[1:] + NAMES[:1],
            "verdict": ["label_issue", "label_issue", "ambiguous", "ok", "ok", "ok"],
            "reason": ["low AUM"] * k,
            "aum": [-0.5, -0.2, 0.1, 0.8, 0.9, None],
            "aum_cutoff": [0.0] * k,
            "cl_issue": [True, True, False, False, False, None],
            "self_confidence": [0.1, 0.2, 0.4, 0.9, 0.9, None],
            "never_learned": [True, False, False, False, False, False],
            "annotators_disagree": [False, True, False, False, False, None],
        }
    )
    matrix = np.full((k, k), 0.04) + np.eye(k) * 0.76
    summary = {
        "vocabulary": NAMES,
        "samples": k,
        "verdicts": {"label_issue": 2, "ambiguous": 1, "ok": 3},
        "aum_cutoff": 0.0,
        "aum_cutoff_from": "threshold samples",
        "confident_learning": {
            "noise_matrix": matrix.tolist(),
            "noise_rate": [0.2, 0.1, 0.05, 0.0, 0.3, 0.15],
            "thresholds": [0.5] * k,
            "probabilities": "out-of-fold",
            "issues": 2,
        },
    }
    out.mkdir()
    return write_report(out, suspects, summary, shards=None, split="train", gallery=k)


def test_charts_draw_korean_class_names_with_no_missing_glyph(tmp_path: Path) -> None:
    assert "Noto Sans CJK KR" in fonts.installed(fonts.HANGUL), (
        "needs Debian's fonts-noto-cjk (`make browser` installs it)"
    )
    assert fonts.chart_names(NAMES) == NAMES
    assert fonts.missing_glyphs(NAMES) == ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_korean_audit(tmp_path / "audit")
    assert [str(w.message) for w in caught if "missing from font" in str(w.message)] == []
    for png in PNGS:
        assert (tmp_path / "audit" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_hangul_font_charts_show_class_ids_and_say_so_once(monkeypatch, caplog, tmp_path: Path) -> None:
    monkeypatch.setattr(fonts, "HANGUL", ("No Such Font",))
    monkeypatch.setattr(fonts, "_warned", set())
    with (
        caplog.at_level(logging.WARNING, logger="pawpipe.common.fonts"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        assert fonts.chart_names(NAMES) == ["0", "1", "2", "3", "4", "5"]
        write_korean_audit(tmp_path / "audit")  # asks again: no second warning
    said = [r.getMessage() for r in caplog.records if r.name == "pawpipe.common.fonts"]
    assert len(said) == 1
    assert (
        "glyphs 행복즐거움편안정당황놀람" in said[0]
        and "(fonts: DejaVu Sans)" in said[0]
        and "apt-get install fonts-noto-cjk" in said[0]
    )
    assert [str(w.message) for w in caught if "missing from font" in str(w.message)] == []  # no tofu drawn


def test_audit_page_lays_out_korean_class_names_with_a_hangul_font_in_chromium(tmp_path: Path) -> None:
    assert chromium() is not None, "chromium is needed for this test (.ci/run installs Debian's package)"
    page = write_korean_audit(tmp_path / "audit")
    assert fonts.CSS_FONT_FAMILY in page.read_text()
    check = check_page(page, fonts_of="td")
    assert check.errors == [] and check.broken_images == [] and check.images == len(PNGS)
    cells = {t.text: t for t in check.texts if t.text in NAMES}
    assert sorted(cells) == sorted(NAMES)  # the table of classes
    for name, cell in cells.items():
        assert cell.width > 0, name
        # every syllable drawn with a Hangul font of the stack (without one, Chromium draws them as DejaVu Sans tofu)
        assert cell.drawn_by(fonts.HANGUL) == sum(not c.isascii() for c in name), (name, cell.fonts)
