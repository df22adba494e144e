"""Fonts for the users' class names (AI Hub's Korean emotions: 행복/즐거움), Latin first and Hangul
after it: one family stack for the HTML pages (``CSS_FONT_FAMILY``), one for matplotlib (``chart_rc``).

matplotlib (>= 3.6) takes a list of families and falls back glyph by glyph; a glyph none of them
has comes out as an empty box (tofu). ``chart_names`` checks a chart's names first: where the
installed fonts lack glyphs it says so once, naming them and the fix, and gives class ids instead.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

LATIN = "DejaVu Sans"  # matplotlib ships it: always there
# Fonts with Hangul, preferred first: Debian/Ubuntu's fonts-noto-cjk, Google Fonts, macOS, Windows, fonts-nanum.
HANGUL = ("Noto Sans CJK KR", "Noto Sans KR", "Apple SD Gothic Neo", "Malgun Gothic", "NanumGothic")
CSS_FONT_FAMILY = ", ".join([f'"{LATIN}"', '"Helvetica Neue"', "Arial", *(f'"{f}"' for f in HANGUL), "sans-serif"])
FIX = "install a font with Hangul (Debian/Ubuntu: apt-get install fonts-noto-cjk)"

_warned: set[str] = set()


def chart_rc() -> dict:
    """matplotlib settings (``matplotlib.rc_context``): Latin from DejaVu Sans, the rest from the installed
    ``HANGUL`` fonts."""
    return {"font.family": [LATIN, *installed(HANGUL)]}


@functools.cache
def installed(families: tuple[str, ...]) -> tuple[str, ...]:
    """The ``families`` matplotlib knows, in order. When it knows none, the system's font files it has
    not seen are added first: its font list is cached, so a font installed after that is unknown to it."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    if not set(families) & {f.name for f in manager.ttflist}:
        seen = {str(f.fname) for f in manager.ttflist}
        for path in font_manager.findSystemFonts():
            if path not in seen:
                try:
                    manager.addfont(path)
                except (OSError, RuntimeError) as exc:  # be specific: a file FreeType cannot read is no font
                    log.debug("%s: not a font matplotlib reads: %s", path, exc)
    known = {f.name for f in manager.ttflist}
    return tuple(f for f in families if f in known)


@functools.cache
def _charmap(family: str) -> frozenset[int]:
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=[family]), fallback_to_default=False)
    return frozenset(font_manager.get_font(path).get_charmap())


def missing_glyphs(texts: list[str]) -> str:
    """The characters of ``texts`` that no font of ``chart_rc()`` draws, each once ('' when all are drawn)."""
    drawn = frozenset().union(*(_charmap(f) for f in chart_rc()["font.family"]))
    return "".join(dict.fromkeys(c for text in texts for c in text if not c.isspace() and ord(c) not in drawn))


def chart_names(names: list[str]) -> list[str]:
    """``names`` for a chart's labels; class ids ("0", "1", ...) where the installed fonts lack some of
    their glyphs, said once per set of missing glyphs with the fix."""
    missing = missing_glyphs(names)
    if not missing:
        return names
    if missing not in _warned:
        _warned.add(missing)
        log.warning(
            "charts show class ids, not names: no installed font has the glyphs %s (fonts: %s); %s",
            missing,
            ", ".join(chart_rc()["font.family"]),
            FIX,
        )
    return [str(i) for i in range(len(names))]
