import numpy as np
import polars as pl
import pytest

from pawpipe.train.audit.aum import aum, calibrated_cutoff, fit_logistic, score_runs, threshold_cutoff
from pawpipe.train.data.threshold import threshold_fraction


def _dyn(rows: list[tuple[str, int, int, float, bool]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["sample_id", "epoch", "label_id", "margin", "finite"], orient="row")


def test_aum_is_the_mean_margin_over_finite_rows():
    dyn = _dyn(
        [
            ("a", 0, 0, 1.0, True),
            ("a", 1, 0, 3.0, True),
            ("a", 2, 0, -100.0, False),
            ("b", 0, 1, -1.0, True),
            ("b", 1, 1, float("nan"), True),
            ("b", 2, 1, 0.5, True),
        ]
    )
    got = aum(dyn)
    assert got.rows() == [("a", 2.0, 2, 0), ("b", -0.25, 2, 1)]


def test_threshold_cutoff_is_the_99th_percentile_of_the_extra_class():
    margins = [-1.0, -0.5, 0.0, 0.5, 1.0]
    dyn = _dyn([(f"t{i}", 0, 6, m, True) for i, m in enumerate(margins)] + [("x", 0, 2, 9.0, True)])
    # numpy's linear percentile: position 0.99 * 4 = 3.96 -> 0.5 + 0.96 * 0.5
    assert threshold_cutoff(aum(dyn), extra_class=6) == pytest.approx(0.98)
    with pytest.raises(ValueError, match="no threshold samples"):
        threshold_cutoff(aum(dyn), extra_class=7)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-t))


def test_fit_logistic_solves_the_ridge_likelihood():
    # symmetric about 0.5: the fitted probability is one half exactly there
    values = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    doubted = np.array([True, True, False, True, False, False])
    a, b = fit_logistic(values, doubted)
    assert a + 0.5 * b == pytest.approx(0.0, abs=1e-12) and b < 0
    # the optimality conditions in standardised units: the residuals sum to 0 and balance the ridge
    z = (values - values.mean()) / values.std()
    residual = doubted - _sigmoid(a + b * values)
    assert residual.sum() == pytest.approx(0.0, abs=1e-12)
    assert (residual * z).sum() == pytest.approx(1e-3 * values.size * b * values.std(), abs=1e-12)
    assert fit_logistic(np.array([-1.0, 0.0, 1.0]), np.array([True, False, False])) is None  # one doubted sample


def test_calibrated_cutoff_corrects_for_the_wrong_labels_the_model_does_not_doubt():
    """Positive-unlabelled: the cut-off is where the fitted doubt is c / 2, c its mean over the doubted."""
    wrong = np.array([-3.0, -2.5, -2.0, -1.5] * 2)
    values = np.concatenate([wrong, np.array([1.0, 1.5, 2.0, 2.5] * 2)])
    doubted = np.array([True, False] * 4 + [False] * 8)  # the model doubts half of the wrong labels
    a, b = fit_logistic(values, doubted)
    c = _sigmoid(a + b * values[doubted]).mean()
    cut = calibrated_cutoff(values, doubted)
    assert _sigmoid(a + b * cut) == pytest.approx(c / 2, abs=1e-12)
    assert c < 1 and cut > -a / b  # above the plain "more likely than not" point, -2.255
    # separable groups, symmetric: c < 1, so the c / 2 point sits right of their midpoint; the cut-off stops at 0
    values, doubted = np.array([-3.0, -2.0, 2.0, 3.0]), np.array([True, True, False, False])
    a, b = fit_logistic(values, doubted)
    c = _sigmoid(a + b * values[doubted]).mean()
    assert (np.log(c / (2 - c)) - a) / b > 0.0 and calibrated_cutoff(values, doubted) == 0.0
    # doubt spread over positive AUMs too (out-of-fold doubt of labels the run memorised): still at most 0
    assert (
        calibrated_cutoff(np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0]), np.array([True, True, True, False, True, False]))
        == 0.0
    )
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
    got = score_runs([(aum(run0), 2), (aum(run1), 2)])
    assert got.scores.rows() == [("a", 3.0), ("b", 1.0), ("c", 3.0)]
    assert got.cutoff == pytest.approx((-2.0 + -1.0) / 2) and "threshold samples" in got.how
    plain = score_runs([(aum(run1), None)])
    assert plain.cutoff is None and "calibrated" in plain.how
