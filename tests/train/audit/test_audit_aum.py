import numpy as np
import polars as pl
import pytest

from train.audit.aum import aum, calibrated_cutoff, score_runs, threshold_cutoff
from train.data.threshold import threshold_fraction


def _dyn(rows: list[tuple[str, int, int, float, bool]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["sample_id", "epoch", "label_id", "margin", "finite"], orient="row")


def test_aum_is_the_mean_margin_over_finite_rows():
    dyn = _dyn([("a", 0, 0, 1.0, True), ("a", 1, 0, 3.0, True), ("a", 2, 0, -100.0, False),
                ("b", 0, 1, -1.0, True), ("b", 1, 1, float("nan"), True), ("b", 2, 1, 0.5, True)])  # fmt: skip
    got = aum(dyn)
    assert got.rows() == [("a", 2.0, 2, 0), ("b", -0.25, 2, 1)]


def test_threshold_cutoff_is_the_99th_percentile_of_the_extra_class():
    margins = [-1.0, -0.5, 0.0, 0.5, 1.0]
    dyn = _dyn([(f"t{i}", 0, 6, m, True) for i, m in enumerate(margins)] + [("x", 0, 2, 9.0, True)])
    # numpy's linear percentile: position 0.99 * 4 = 3.96 -> 0.5 + 0.96 * 0.5
    assert threshold_cutoff(aum(dyn), extra_class=6) == pytest.approx(0.98)
    with pytest.raises(ValueError, match="no threshold samples"):
        threshold_cutoff(aum(dyn), extra_class=7)


def test_calibrated_cutoff_is_where_doubt_becomes_more_likely():
    # symmetric about 0.5: the fitted probability is one half exactly there
    values = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    doubted = np.array([True, True, False, True, False, False])
    assert calibrated_cutoff(values, doubted) == pytest.approx(0.5, abs=1e-9)
    # separable groups: a finite cut-off between them (the ridge keeps the slope finite), at their midpoint by symmetry
    cut = calibrated_cutoff(np.array([-3.0, -2.0, 2.0, 3.0]), np.array([True, True, False, False]))
    assert cut == pytest.approx(0.0, abs=1e-9)
    # nothing to calibrate against, or doubt rising with the AUM: nothing flagged
    assert calibrated_cutoff(np.array([-1.0, 0.0, 1.0]), np.array([True, False, False])) == float("-inf")
    assert calibrated_cutoff(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([False, False, True, True])) == float("-inf")


def test_threshold_subsets_partition_the_samples():
    ids = pl.Series([f"s{i}" for i in range(500)])
    masks = [threshold_fraction(ids, num_classes=4, subset=s, seed=3) for s in range(5)]
    total = sum(m.cast(pl.Int64) for m in masks)
    assert total.to_list() == [1] * 500  # disjoint, and together every sample once
    assert masks[0].equals(threshold_fraction(ids, num_classes=4, subset=0, seed=3))  # deterministic


def test_score_runs_takes_each_sample_from_the_runs_where_it_kept_its_label():
    run0 = _dyn([("a", 0, 2, -2.0, True), ("b", 0, 0, 1.0, True), ("c", 0, 1, 4.0, True)])  # a: threshold sample
    run1 = _dyn([("a", 0, 0, 3.0, True), ("b", 0, 2, -1.0, True), ("c", 0, 1, 2.0, True)])  # b: threshold sample
    scores, cutoff, how = score_runs([(aum(run0), 2), (aum(run1), 2)])
    assert scores.rows() == [("a", 3.0), ("b", 1.0), ("c", 3.0)]
    assert cutoff == pytest.approx((-2.0 + -1.0) / 2) and "threshold samples" in how
