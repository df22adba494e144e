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
label). Without such a run the cut-off is where a two-component Gaussian mixture on the AUMs
switches component (``mixture_cutoff``): learned from the data, never a count.

Rows of skipped (non-finite) updates are left out of the means.
"""

from __future__ import annotations

import numpy as np
import polars as pl

THRESHOLD_PERCENTILE = 99.0


def aum(dynamics: pl.DataFrame) -> pl.DataFrame:
    """Per sample: ``aum`` (mean margin over finite rows), ``epochs`` counted, and ``label_id`` as trained."""
    rows = dynamics.filter(pl.col("finite") & pl.col("margin").is_finite()) if "finite" in dynamics.columns else dynamics
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


def mixture_cutoff(values: np.ndarray, *, iterations: int = 200, seed: int = 0) -> float:
    """Where a two-component 1-D Gaussian mixture fitted by EM changes its most likely component.

    The low component is the mislabelled one. A few lines of EM rather than a machine-learning
    dependency for one 1-D fit. Returns ``-inf`` (nothing flagged) when the data hold no second
    component (the two means coincide).
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 4 or np.ptp(x) == 0:
        return float("-inf")
    lo, hi = np.percentile(x, [10, 90])
    mu = np.array([lo, hi])
    var = np.full(2, x.var() / 4 + 1e-9)
    w = np.array([0.5, 0.5])
    for _ in range(iterations):
        dens = w / np.sqrt(2 * np.pi * var) * np.exp(-((x[:, None] - mu) ** 2) / (2 * var))
        resp = dens / np.clip(dens.sum(axis=1, keepdims=True), 1e-300, None)
        n = resp.sum(axis=0) + 1e-12
        new_mu = (resp * x[:, None]).sum(axis=0) / n
        var = np.maximum((resp * (x[:, None] - new_mu) ** 2).sum(axis=0) / n, 1e-6 * x.var() + 1e-12)
        w = n / x.size
        if np.allclose(new_mu, mu, rtol=0, atol=1e-10):
            mu = new_mu
            break
        mu = new_mu
    low, high = np.argsort(mu)
    if np.isclose(mu[low], mu[high]):
        return float("-inf")
    grid = np.linspace(mu[low], mu[high], 2001)
    log_p = lambda k: np.log(w[k]) - 0.5 * np.log(2 * np.pi * var[k]) - (grid - mu[k]) ** 2 / (2 * var[k])  # noqa: E731
    high_wins = log_p(high) > log_p(low)
    return float(grid[np.argmax(high_wins)]) if high_wins.any() else float(mu[high])


def score_runs(runs: list[tuple[pl.DataFrame, int | None]]) -> tuple[pl.DataFrame, float, str]:
    """AUM per sample over several runs and its cut-off.

    ``runs``: (per-sample AUMs of a run as ``aum`` gives them, with ``label_id``; the extra class
    id or None for an ordinary run). A sample's AUM is the mean
    over the runs where it kept its own label; the cut-off is the mean of the threshold runs'
    cut-offs, or the mixture cut-off when no run had threshold samples. Returns
    (``sample_id``, ``aum``), the cut-off and how it was found (words).
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
        return merged, float(np.mean(cutoffs)), how
    return merged, mixture_cutoff(merged.get_column("aum").to_numpy()), "two-component Gaussian mixture on the AUMs"
