import unicodedata

import pytest

from pawpipe.common.textwidth import columns, ljust


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("class", 5),
        ("", 0),
        ("행복/즐거움", 11),
        ("상처/슬픔", 9),
        (
            unicodedata.normalize("NFD", "행복/즐거움"),
            11,
        ),  # decomposed Hangul (macOS file names): one cell per syllable
        ("ＡＢ", 4),
        ("e\u0301", 1),  # fullwidth Latin; a combining accent
    ],
)
def test_columns_count_wide_characters_twice(text: str, expected: int) -> None:
    assert columns(text) == expected


def test_ljust_pads_to_terminal_columns_and_never_cuts() -> None:
    assert ljust("행복/즐거움", 14) == "행복/즐거움   "
    assert ljust("class", 14) == "class         "
    assert ljust("행복/즐거움", 4) == "행복/즐거움"
