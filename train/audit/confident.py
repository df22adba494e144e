"""Confident learning (Northcutt, Jiang and Chuang, JAIR 2021), written from the paper with numpy.

Input: predicted probabilities ``probs`` (N x K; out-of-sample from cross-fitting at best, or the
probabilities the trainer recorded) and the given labels (N). Steps, as in the paper (Sec. 2-3):

1. per-class thresholds ``t_j`` = the mean self-confidence ``p_j(x)`` over the samples labelled j;
2. the confident joint ``C[i][j]``: a sample labelled i counts towards the class j it is
   confidently in (``p_j(x) >= t_j``; among several such classes the most probable one);
   a sample confident in no class is not counted;
3. calibration: each row of ``C`` rescaled to the number of samples labelled i, then the whole
   matrix to sum 1: ``Q`` estimates the joint p(given = i, true = j);
4. the noise matrix p(given = i | true = j) = ``Q[i][j] / sum_i Q[i][j]``; the per-class noise
   rate is the share of samples labelled i whose true class is another one;
5. label issues by *prune by noise rate*: for every off-diagonal (i, j), the ``round(N * Q[i][j])``
   samples labelled i with the largest margin ``p_j(x) - p_i(x)``; ranked by self-confidence
   ``p_i(x)``, lowest first.

The cut-offs are learned from the data (thresholds and counts from the estimated joint); no count
is supplied by the user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfidentResult:
    thresholds: np.ndarray  # (K,) per-class mean self-confidence; inf for a class nobody carries
    confident_joint: np.ndarray  # (K, K) counts: rows given label, columns confident class
    joint: np.ndarray  # (K, K) calibrated, sums to 1
    noise_matrix: np.ndarray  # (K, K) p(given = i | true = j), columns sum to 1 (or 0 for an empty class)
    noise_rate: np.ndarray  # (K,) share of samples labelled i whose true class is another
    confident_class: np.ndarray  # (N,) the class j counted in C, or -1 when confident in none
    self_confidence: np.ndarray  # (N,) p_given(x)
    issues: np.ndarray  # (N,) bool: pruned by noise rate
    suggested: np.ndarray  # (N,) the confident class when another one, else the most probable other class

    def ranked_issues(self) -> np.ndarray:
        """Indices of the issues, lowest self-confidence first (ties: by index)."""
        idx = np.flatnonzero(self.issues)
        return idx[np.lexsort((idx, self.self_confidence[idx]))]


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = probs.shape[1]
    t = np.full(k, np.inf)
    for j in range(k):
        mine = labels == j
        if mine.any():
            t[j] = probs[mine, j].mean()
    return t


def confident_joint(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, confident class per sample or -1)."""
    k = probs.shape[1]
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -np.inf)
    best = masked.argmax(axis=1)
    counted = above.any(axis=1)
    confident = np.where(counted, best, -1)
    c = np.zeros((k, k), dtype=np.int64)
    np.add.at(c, (labels[counted], best[counted]), 1)
    return c, confident


def calibrate(c: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """Rows of ``c`` rescaled to the label counts, then the matrix to sum 1 (the paper's Eq. 2-3)."""
    rows = c.sum(axis=1, keepdims=True).astype(np.float64)
    q = np.divide(c, rows, out=np.zeros(c.shape), where=rows > 0) * label_counts[:, None]
    total = q.sum()
    return q / total if total > 0 else q


def prune_by_noise_rate(probs: np.ndarray, labels: np.ndarray, joint: np.ndarray) -> np.ndarray:
    n, k = probs.shape
    issues = np.zeros(n, dtype=bool)
    for i in range(k):
        mine = np.flatnonzero(labels == i)
        for j in range(k):
            count = int(round(n * joint[i, j])) if i != j else 0
            if count == 0 or mine.size == 0:
                continue
            margin = probs[mine, j] - probs[mine, i]
            order = np.lexsort((mine, -margin))  # largest margin first, ties by index
            issues[mine[order[:count]]] = True
    return issues


def find_label_issues(probs: np.ndarray, labels: np.ndarray) -> ConfidentResult:
    """Every step of confident learning on ``probs`` (N x K) and ``labels`` (N,) in ``0..K-1``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = probs.shape
    if labels.shape != (n,) or (labels.size and (labels.min() < 0 or labels.max() >= k)):
        raise ValueError(f"labels: expected {n} ids in 0..{k - 1}, got shape {labels.shape}")
    thresholds = per_class_thresholds(probs, labels)
    c, confident = confident_joint(probs, labels, thresholds)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    joint = calibrate(c, counts)
    col = joint.sum(axis=0, keepdims=True)
    noise = np.divide(joint, col, out=np.zeros_like(joint), where=col > 0)
    row = joint.sum(axis=1)
    noise_rate = np.divide(row - np.diag(joint), row, out=np.zeros(k), where=row > 0)
    self_conf = probs[np.arange(n), labels]
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    suggested = np.where((confident >= 0) & (confident != labels), confident, others.argmax(axis=1))
    return ConfidentResult(
        thresholds=thresholds,
        confident_joint=c,
        joint=joint,
        noise_matrix=noise,
        noise_rate=noise_rate,
        confident_class=confident,
        self_confidence=self_conf,
        issues=prune_by_noise_rate(probs, labels, joint),
        suggested=suggested,
    )
