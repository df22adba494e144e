"""Near-duplicate frames by perceptual hash: the grouped, greedy comparison behind rule ``image.near_duplicate``.

Kept apart from the rule's registration so that the ingest report can count near-duplicates at
several distances without importing a rule module (importing one registers it, and the order of
registration is the order of evaluation).

Frames cut from a video every 200 ms are often near-copies of their neighbours; they cost epoch
time and teach little. Each image carries a 64-bit perceptual hash (``dhash``, taken by the image
probe from its reduced decode). Within one group (``group_id``: the video) and one label, frames
are visited in input order (annotation order: frame order for a video) and a frame whose hash is
within Hamming distance ``max_distance`` of a frame **kept** before it is a near-duplicate; the
others are kept. Comparing with kept frames only (not with every earlier frame) stops a slow pan
from chaining a whole video onto its first frame.

Grouped, so it scales: the pairwise distances (popcount of XOR) are computed per group only,
in blocks of bounded size, never across the dataset. Exact byte copies are ``image.duplicate``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field

from pawpipe.validation_rules.registry import RuleParams

_BLOCK_CELLS = 1 << 24  # distance-matrix cells per block: 16 MB of uint8, whatever the group size


class NearDuplicateParams(RuleParams):
    max_distance: int = Field(4, ge=0, le=64)  # Hamming distance of two 64-bit hashes that counts as "the same frame"


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between uint64 hashes, broadcast (``a[:, None]`` against ``b[None, :]`` gives a matrix)."""
    return np.bitwise_count(np.bitwise_xor(a, b))


def near_duplicates(hashes: np.ndarray, *, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """For hashes in visiting order: (index of the kept frame each one repeats or -1, its distance or -1).

    The first frame is kept; a later frame repeats the nearest kept frame before it within
    ``max_distance`` (the earliest on a tie). Frames with no near earlier frame at all are kept
    without a decision; the greedy pass visits only the others.
    """
    n = hashes.size
    keeper = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, -1, dtype=np.int64)
    block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(1, n, block):
        stop = min(n, start + block)
        d = hamming(hashes[start:stop, None], hashes[None, :stop]).astype(np.int16)
        d[np.arange(stop - start)[:, None] <= np.arange(stop)[None, :] - start] = 99  # only earlier frames count
        for row in np.flatnonzero((d <= max_distance).any(axis=1)):
            i = start + row
            near = d[row, :i]
            near = np.where((keeper[:i] < 0) & (near <= max_distance), near, 99)  # kept frames only
            j = int(np.argmin(near))
            if near[j] <= max_distance:
                keeper[i], dist[i] = j, int(near[j])
    return keeper, dist


def mark_near_duplicates(frame: pl.DataFrame, p: NearDuplicateParams) -> pl.DataFrame:
    """Add ``_near_keeper`` (the kept frame's sample id) and ``_near_distance`` to the still-clean rows it repeats."""
    ident = "sample_id" if "sample_id" in frame.columns else "image_path"
    keeper_col = pl.Series("_near_keeper", [None] * frame.height, dtype=pl.String)
    dist_col = pl.Series("_near_distance", [None] * frame.height, dtype=pl.Int64)
    if "dhash" not in frame.columns:  # frames built without the probe carry no hash: nothing to compare
        return frame.with_columns(keeper_col, dist_col)
    rows = (
        frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), "_ok", "dhash", "group_id", "label", ident)
        .filter(pl.col("_ok") & pl.col("dhash").is_not_null())
        .with_columns(pl.col("dhash").cast(pl.UInt64))
        .filter(pl.len().over("group_id", "label") > 1)
        .sort("group_id", "label", "_row", nulls_last=True)
    )
    if rows.height:
        hashes = rows.get_column("dhash").to_numpy()
        ids = rows.get_column(ident).to_numpy()
        starts = rows.select(
            pl.col("group_id").ne_missing(pl.col("group_id").shift())
            | pl.col("label").ne_missing(pl.col("label").shift())
        ).to_series()
        bounds = starts.arg_true().to_numpy()[1:]
        hit_rows, hit_keepers, hit_dists = [], [], []
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, rows.height]):
            keeper, dist = near_duplicates(hashes[lo:hi], max_distance=p.max_distance)
            hit = np.flatnonzero(keeper >= 0)
            hit_rows.append(lo + hit)
            hit_keepers.append(ids[lo + keeper[hit]])
            hit_dists.append(dist[hit])
        hit = np.concatenate(hit_rows)
        if hit.size:
            where = rows.get_column("_row").to_numpy()[hit]
            keeper_col = keeper_col.scatter(where, pl.Series(np.concatenate(hit_keepers).astype(str)))
            dist_col = dist_col.scatter(where, pl.Series(np.concatenate(hit_dists)))
    return frame.with_columns(keeper_col, dist_col)


def near_duplicate_flags(frame: pl.DataFrame, *, max_distance: int) -> pl.Series:
    """True for each row of ``frame`` (in visiting order) that repeats a kept frame of its video and label."""
    marked = mark_near_duplicates(frame.with_columns(_ok=pl.lit(True)), NearDuplicateParams(max_distance=max_distance))
    return marked.get_column("_near_keeper").is_not_null().alias("near_duplicate")
