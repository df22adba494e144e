"""Class weights."""

from __future__ import annotations

import pytest

from ingest.labels import class_weights


def test_balanced_is_n_over_k_nc() -> None:
    assert class_weights([10, 30, 60], "balanced") == pytest.approx([100 / 30, 100 / 90, 100 / 180])


def test_absent_class_gets_zero_and_others_ignore_it() -> None:
    assert class_weights([10, 0, 30], "balanced") == pytest.approx([2.0, 0.0, 40 / 60])


def test_effective_number_mean_one_and_monotone() -> None:
    w = class_weights([10, 100, 1000], "effective_number", beta=0.99)
    assert sum(w) / 3 == pytest.approx(1.0)
    assert w[0] > w[1] > w[2]
    raw = [(1 - 0.99) / (1 - 0.99**n) for n in (10, 100, 1000)]
    assert w[0] / w[2] == pytest.approx(raw[0] / raw[2])


def test_unknown_scheme_raises() -> None:
    with pytest.raises(ValueError, match="class weights"):
        class_weights([1], "inverse")
