"""Area under the margin (Pleiss et al., NeurIPS 2020), with its cut-off from threshold samples or the data.

The AUM of a sample is the mean, over the epochs it was trained in, of its logit margin
``z_label - max_{c != label} z_c`` (the ``margin`` column of the training dynamics). A mislabelled
sample is pushed towards its given class only by memorisation, so its margin stays low or negative
for long: a low AUM flags it.

The cut-off comes from purposefully mislabelled **threshold samples**: a run with
``[audit] threshold_samples = true`` gives a deterministic 1/(K+1) of the training samples an extra,
non-existent class (``threshold_subset``); no image feature supports that class, so their AUMs are
what a wrong label looks like, and the 99th percentile of them is the cut-off. Two runs with
disjoint subsets score every sample (each sample's AUM is taken from the runs where it kept its own
label). Without such a run the cut-off is **calibrated against the model's view** (``calibrated_cutoff``):
a logistic fit of "the trained model prefers another class than the given one" on the AUM. The
model's doubt is a precise but incomplete view of the wrong labels (it misses the flips the model
fitted), so the fit is read as positive-unlabelled data (Elkan & Noto, KDD 2008): the doubted
samples are the labelled positives, ``c`` = the mean fitted probability over them estimates the
share of wrong labels the model doubts, and the cut-off is the AUM where the fitted probability is
``c / 2``, where a wrong label becomes more likely than a right one (and at most 0). Learned from
the data, never a count; it replaced a two-component Gaussian mixture on the AUMs, whose boundary
moved by more than a unit of margin between two runs of the same data and flagged most of a set
with a fifth of its labels flipped (a weak model's clean AUMs have a long low tail that no Gaussian
fits; measured before the benches saved their results, not rerun since).

Not adjusted within the video: taking off a share of each video's median AUM (so a hard video's
clean frames look less suspect) ranked single flipped frames better, but when a whole video carries
the wrong label (one annotator's label over a video, the users' case) it hid exactly those videos
(on planted per-video flips, ``bench/noise_bench.py --noise-unit video``; measured before the
benches saved their results, not rerun since), so the AUM is used as it is.

Rows of skipped (non-finite) updates are left out of the means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

THRESHOLD_PERCENTILE = 99.0


def aum(dynamics: pl.DataFrame) -> pl.DataFrame:
    """Per sample: ``aum`` (mean margin over finite rows), ``epochs`` counted, and ``label_id`` as trained."""
    rows = (
        dynamics.filter(pl.col("finite") & pl.col("margin").is_finite()) if "finite" in dynamics.columns else dynamics
    )
    return (
        rows.group_by("sample_id")
        .agg(aum=pl.col("margin").mean(), epochs=pl.col("epoch").n_unique(), label_id=pl.col("label_id").first())
        .sort("sample_id")
    )


def threshold_cutoff(scores: pl.DataFrame, *, extra_class: int, percentile: float = THRESHOLD_PERCENTILE) -> float:
    """The ``percentile`` of the AUMs of the threshold samples (those trained as ``extra_class``)."""
    values = scores.filter(pl.col("label_id") == extra_class).get_column("aum").to_numpy()
    if values.size == 0:
        raise ValueError(f"no threshold samples (label_id {extra_class}) in the dynamics")
    return float(np.percentile(values, percentile))


def fit_logistic(
    values: np.ndarray, doubted: np.ndarray, *, ridge: float = 1e-3, iterations: int = 100
) -> tuple[float, float] | None:
    """``(a, b)`` of ``P(doubted | x) = 1 / (1 + exp(-(a + b x)))``, fitted by Newton's method.

    The slope is fitted on the standardised ``x`` with a small ridge on it (so separable data give a
    finite slope). None when either group has fewer than two samples or ``x`` is constant.
    """
    x = np.asarray(values, dtype=np.float64)
    z = np.asarray(doubted, dtype=bool)
    keep = np.isfinite(x)
    x, z = x[keep], z[keep].astype(np.float64)
    if z.sum() < 2 or (1 - z).sum() < 2 or np.ptp(x) == 0:
        return None
    mean, std = x.mean(), x.std()
    design = np.stack([np.ones_like(x), (x - mean) / std], axis=1)
    w = np.zeros(2)
    penalty = np.diag([0.0, ridge * x.size])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -500, 500)))
        grad = design.T @ (z - p) - penalty @ w
        hess = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-12:
            break
    return float(w[0] - w[1] * mean / std), float(w[1] / std)


def calibrated_cutoff(values: np.ndarray, doubted: np.ndarray) -> float:
    """The AUM below which a wrong label is more likely than not, learned from the model's doubt.

    ``fit_logistic`` of ``doubted`` on ``values``; ``c`` = the mean fitted probability over the
    doubted samples (the share of wrong labels the doubt catches, positive-unlabelled learning); the
    cut-off is where the fitted probability is ``c / 2``, and never above 0: a positive AUM means the
    given label was the model's first choice on average over training, which the training dynamics
    cannot call wrong (when the doubt comes from out-of-fold models that disagree with a memorised
    label, a flat fit would otherwise put the cut-off far into the clean samples). ``-inf`` (nothing
    flagged) when the fit is not possible or doubt does not fall as the AUM rises.
    """
    fit = fit_logistic(values, doubted)
    if fit is None or fit[1] >= 0:
        return float("-inf")
    a, b = fit
    x = np.asarray(values, dtype=np.float64)
    z = np.asarray(doubted, dtype=bool) & np.isfinite(x)
    c = float(np.mean(1.0 / (1.0 + np.exp(-np.clip(a + b * x[z], -500, 500)))))
    return min(float((np.log(c / (2.0 - c)) - a) / b), 0.0)


@dataclass(frozen=True)
class AumScores:
    """Per sample ``aum`` over the runs, the cut-off (None: no threshold run, calibrate one) and how
    it was found (words)."""

    scores: pl.DataFrame
    cutoff: float | None
    how: str


def score_runs(runs: list[tuple[pl.DataFrame, int | None]]) -> AumScores:
    """AUM per sample over several runs and its cut-off.

    ``runs``: (per-sample AUMs of a run as ``aum`` gives them, with ``label_id``; the extra class
    id or None for an ordinary run). A sample's AUM is the mean over the runs where it kept its own
    label; the cut-off is the mean of the threshold runs' cut-offs, or None when no run had
    threshold samples (the audit then calibrates one against the model's view, ``calibrated_cutoff``).
    """
    per_run, cutoffs = [], []
    for scores, extra in runs:
        if extra is not None:
            cutoffs.append(threshold_cutoff(scores, extra_class=extra))
            scores = scores.filter(pl.col("label_id") != extra)
        per_run.append(scores.select("sample_id", "aum"))
    merged = pl.concat(per_run).group_by("sample_id").agg(pl.col("aum").mean()).sort("sample_id")
    if cutoffs:
        how = f"{THRESHOLD_PERCENTILE:g}th percentile of the threshold samples' AUM ({len(cutoffs)} run(s))"
        return AumScores(merged, float(np.mean(cutoffs)), how)
    return AumScores(
        merged, None, "calibrated against the model's view (logistic fit of its doubt on the AUM, positive-unlabelled)"
    )
