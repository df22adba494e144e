"""Class weights."""

from __future__ import annotations

import pytest

from pawpipe.common.contracts.labels_file import class_weights, effective_number_beta


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


def test_effective_number_beta_from_the_data_keeps_weights_apart_at_the_users_scale() -> None:
    """50k-500k frames per class: beta 0.999 collapses to uniform, 1 - 1/n_max does not."""
    counts = [50_000, 120_000, 500_000]
    fixed = class_weights(counts, "effective_number", beta=0.999)
    assert max(fixed) / min(fixed) < 1.0001
    beta = effective_number_beta(counts)
    assert beta == 1 - 1 / 500_000
    weights = class_weights(counts, "effective_number", beta=beta)
    # (1 - b) / (1 - b**n) with b = 1 - 1/n_max: ratio of the smallest to the largest class
    expected = (1 - beta**500_000) / (1 - beta**50_000)
    assert weights[0] / weights[2] == pytest.approx(expected, rel=1e-9) and 6.5 < expected < 6.7
    assert weights[0] > weights[1] > weights[2]
