"""Per-sample summaries of a run's training dynamics, read one epoch at a time.

The audit needs, per sample, the AUM (``train.audit.aum.aum``), the forgetting counts
(``train.audit.forgetting.forgetting``) and the mean training-time probabilities. Those functions
take the whole dynamics table; at the users' scale (2M samples x 30 epochs = 60M rows, several GB)
that is more memory than the answer needs. ``summarise`` reads one epoch's parts at a time and keeps
running sums per sample, so memory is one epoch plus one row of state per sample, and the result
is the same (equal to rounding: sums taken in another order).

Rows of skipped (non-finite) updates are left out, as in the whole-table functions; the AUM also
skips a non-finite margin. In a threshold-sample run the rows trained as the extra class take part
in the AUM (their AUMs give the cut-off) but not in forgetting or the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pawpipe.train.fit.dynamics import list_parts, read_dynamics


@dataclass(frozen=True)
class RunSummary:
    aum: pl.DataFrame  # sample_id, aum, epochs, label_id (as train.audit.aum.aum)
    forgetting: pl.DataFrame  # sample_id, forgetting_events, never_learned, epochs, forgetting_score
    probs: pl.DataFrame  # sample_id, probs (mean of the row-normalised first K probabilities), n (rows)
    labels: (
        pl.DataFrame
    )  # sample_id, label_id: the first label of every sample with a row (finite or not; threshold rows left out)
    epochs: list[int]  # the recorded epochs
    rows: int  # finite dynamics rows read


_EMPTY_STATE = {
    "sample_id": pl.String,
    "m_sum": pl.Float64,
    "m_n": pl.Int64,
    "aum_epochs": pl.Int64,
    "label_id": pl.Int64,
    "given": pl.Int64,
    "prev": pl.Boolean,
    "events": pl.Int64,
    "ever": pl.Boolean,
    "f_epochs": pl.Int64,
    "p_n": pl.Int64,
}


def summarise(folder: str | Path, *, num_classes: int, extra_class: int | None = None) -> RunSummary:
    """Every epoch of ``folder`` (a run's ``dynamics/``) folded into per-sample sums, one epoch at a time."""
    k = num_classes
    p_cols = [f"p{j}" for j in range(k)]
    state = pl.DataFrame(schema={**_EMPTY_STATE, **{c: pl.Float64 for c in p_cols}})
    rows_read = 0
    epochs = sorted({part[0] for part in list_parts(folder)})
    for epoch in epochs:
        every = read_dynamics(folder, epoch=epoch)
        rows = every.filter(pl.col("finite"))
        rows_read += rows.height
        own = every if extra_class is None else every.filter(pl.col("label_id") != extra_class)
        given = own.group_by("sample_id", maintain_order=True).agg(e_given=pl.col("label_id").first().cast(pl.Int64))
        sums = _epoch_sums(rows, k, extra_class).join(given, on="sample_id", how="full", coalesce=True)
        state = _fold(state, sums, p_cols)
    aum = (
        state.filter(pl.col("m_n") > 0)
        .select(
            "sample_id",
            aum=pl.col("m_sum") / pl.col("m_n"),
            epochs=pl.col("aum_epochs").cast(pl.UInt32),
            label_id="label_id",
        )
        .sort("sample_id")
    )
    forgetting = (
        state.filter(pl.col("f_epochs") > 0)
        .select("sample_id", forgetting_events="events", never_learned=~pl.col("ever"), epochs="f_epochs")
        .with_columns(
            forgetting_score=pl.when(pl.col("never_learned"))
            .then(pl.col("epochs") + 1)
            .otherwise(pl.col("forgetting_events"))
            .cast(pl.Float64)
        )
        .sort("sample_id")
    )
    seen = state.filter(pl.col("p_n") > 0).sort("sample_id")
    sums = seen.select(p_cols).to_numpy() if k else np.zeros((seen.height, 0))
    n = seen.get_column("p_n").to_numpy()
    probs = pl.DataFrame({"sample_id": seen.get_column("sample_id"), "probs": sums / n[:, None], "n": n})
    labels = state.filter(pl.col("given").is_not_null()).select("sample_id", label_id="given").sort("sample_id")
    return RunSummary(aum=aum, forgetting=forgetting, probs=probs, labels=labels, epochs=epochs, rows=rows_read)


def sum_by_sample(
    sample_ids: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``values`` (N x K) summed per sample id, each row times its weight (default 1):
    (the sorted ids as strings, the sums, the summed weights per id, i.e. the row counts by default)."""
    ids, codes = np.unique(sample_ids, return_inverse=True)
    w = np.ones(codes.size) if weights is None else np.asarray(weights, dtype=np.float64)
    sums = np.zeros((ids.size, values.shape[1]))
    np.add.at(sums, codes, values * w[:, None])
    return ids.astype(str), sums, np.bincount(codes, weights=w, minlength=ids.size)


def _epoch_sums(rows: pl.DataFrame, k: int, extra_class: int | None) -> pl.DataFrame:
    """One epoch's finite rows -> per sample: margin sum and count, first label, last correctness, probability sums."""
    margins = (
        rows.filter(pl.col("margin").is_finite())
        .group_by("sample_id")
        .agg(
            e_m_sum=pl.col("margin").cast(pl.Float64).sum(),
            e_m_n=pl.len().cast(pl.Int64),
            e_label=pl.col("label_id").first(),
        )
    )
    own = rows if extra_class is None else rows.filter(pl.col("label_id") != extra_class)
    correct = own.group_by("sample_id").agg(e_correct=(pl.col("pred_id") == pl.col("label_id")).last())
    probs = own.get_column("probs").to_numpy().astype(np.float64)[:, :k] if own.height else np.zeros((0, k))
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    ids, sums, counts = sum_by_sample(own.get_column("sample_id").to_numpy(), probs)
    prob_sums = pl.DataFrame(
        {"sample_id": ids, "e_p_n": counts.astype(np.int64), **{f"e_p{j}": sums[:, j] for j in range(k)}},
        schema_overrides={"sample_id": pl.String},
    )
    return margins.join(correct, on="sample_id", how="full", coalesce=True).join(
        prob_sums, on="sample_id", how="full", coalesce=True
    )


def _fold(state: pl.DataFrame, epoch: pl.DataFrame, p_cols: list[str]) -> pl.DataFrame:
    both = state.join(epoch, on="sample_id", how="full", coalesce=True)
    zero = lambda name: pl.col(name).fill_null(0)  # noqa: E731
    present = pl.col("e_correct").is_not_null()
    return both.select(
        "sample_id",
        m_sum=pl.col("m_sum").fill_null(0.0) + pl.col("e_m_sum").fill_null(0.0),
        m_n=zero("m_n") + zero("e_m_n"),
        aum_epochs=zero("aum_epochs") + (zero("e_m_n") > 0).cast(pl.Int64),
        label_id=pl.col("label_id").fill_null(pl.col("e_label")),
        given=pl.col("given").fill_null(pl.col("e_given")),
        prev=pl.when(present).then(pl.col("e_correct")).otherwise(pl.col("prev")),
        events=zero("events") + (pl.col("prev") & ~pl.col("e_correct")).fill_null(False).cast(pl.Int64),
        ever=pl.col("ever").fill_null(False) | pl.col("e_correct").fill_null(False),
        f_epochs=zero("f_epochs") + present.cast(pl.Int64),
        p_n=zero("p_n") + zero("e_p_n"),
        **{c: pl.col(c).fill_null(0.0) + pl.col(f"e_{c}").fill_null(0.0) for c in p_cols},
    )
