"""Terminal columns of text, so tables of the users' Korean class names (행복/즐거움) line up:
East Asian wide and fullwidth characters take two columns, combining marks none.

    >>> columns("행복/즐거움"), ljust("행복/즐거움", 14) + "|"
    (11, '행복/즐거움   |')
"""

from __future__ import annotations

import unicodedata


def _char_columns(char: str) -> int:
    # A decomposed (NFD) Hangul syllable's vowel and final consonant join the leading consonant's cell.
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf") or "\u1160" <= char <= "\u11ff":
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def columns(text: str) -> int:
    """How many terminal columns ``text`` takes."""
    return sum(_char_columns(c) for c in text)


def ljust(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (``str.ljust`` counts characters)."""
    return text + " " * max(0, width - columns(text))
