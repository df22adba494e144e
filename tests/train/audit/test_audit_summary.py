"""The epoch-at-a-time summary equals the whole-table AUM, forgetting and mean probabilities."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pawpipe.common.contracts.dynamics_table import dynamics_schema
from pawpipe.train.audit.aum import aum
from pawpipe.train.audit.forgetting import forgetting
from pawpipe.train.audit.summary import summarise
from pawpipe.train.fit.dynamics import read_dynamics

K = 3


def _write(folder: Path, epoch: int, rows: list[tuple]) -> None:
    cols = list(zip(*rows, strict=True))
    table = pa.table(
        {
            "sample_id": cols[0],
            "epoch": [epoch] * len(rows),
            "step": list(range(len(rows))),
            "label_id": cols[1],
            "pred_id": cols[2],
            "loss": [0.5] * len(rows),
            "margin": cols[3],
            "probs": cols[4],
            "finite": cols[5],
        },
        schema=dynamics_schema(K),
    )
    pq.write_table(table, folder / f"epoch_{epoch:04d}.b0000000-{len(rows):07d}.parquet")


def _expected_probs(dyn: pl.DataFrame, extra: int | None, k: int = K) -> dict[str, np.ndarray]:
    rows = dyn.filter(pl.col("finite"))
    if extra is not None:
        rows = rows.filter(pl.col("label_id") != extra)
    out: dict[str, list] = {}
    for sid, p in rows.select("sample_id", "probs").iter_rows():
        v = np.asarray(p, dtype=np.float64)[:k]
        out.setdefault(sid, []).append(v / v.sum())
    return {s: np.mean(v, axis=0) for s, v in out.items()}


@pytest.mark.parametrize("extra", [None, 2])
def test_summary_equals_the_whole_table_functions(tmp_path: Path, extra):
    p = [0.5, 0.25, 0.25]
    _write(
        tmp_path,
        0,
        [
            ("a", 0, 0, 1.5, p, True),
            ("b", 1, 0, -0.5, p, True),
            ("c", 2, 1, -2.0, p, True),
            ("a", 0, 1, -0.25, [0.2, 0.6, 0.2], True),
        ],
    )  # a twice in one epoch: the last row decides correctness
    _write(
        tmp_path, 1, [("a", 0, 1, -1.0, p, True), ("b", 1, 1, 2.0, [0.1, 0.8, 0.1], True), ("b", 1, 0, 9.0, p, False)]
    )  # c absent; a non-finite update's row is left out
    _write(
        tmp_path,
        2,
        [("a", 0, 0, 0.75, p, True), ("b", 1, 0, math.nan, [0.3, 0.3, 0.4], True), ("c", 2, 2, 1.0, p, True)],
    )
    dyn = read_dynamics(tmp_path)
    got = summarise(tmp_path, num_classes=K, extra_class=extra)
    assert got.rows == 9 and got.epochs == [0, 1, 2]
    own_rows = dyn if extra is None else dyn.filter(pl.col("label_id") != extra)
    assert (
        got.labels.rows()
        == own_rows.group_by("sample_id", maintain_order=True).agg(pl.col("label_id").first()).sort("sample_id").rows()
    )
    want_aum = aum(dyn)
    assert (
        got.aum.select("sample_id", "epochs", "label_id").rows()
        == want_aum.select("sample_id", "epochs", "label_id").rows()
    )
    assert got.aum.get_column("aum").to_list() == pytest.approx(want_aum.get_column("aum").to_list(), rel=1e-12)
    own = dyn if extra is None else dyn.filter(pl.col("label_id") != extra)
    assert got.forgetting.rows() == forgetting(own).rows()
    want = _expected_probs(dyn, extra)
    assert got.probs.get_column("sample_id").to_list() == sorted(want)
    for sid, probs, _ in got.probs.iter_rows():
        assert np.allclose(probs, want[sid], rtol=1e-12, atol=0), sid


def test_summary_of_the_fixture_runs(audited_runs):
    """The two real runs (an ordinary one and a threshold-sample one) the audit tests use."""
    from pawpipe.train.audit.audit import load_run

    for run_dir in audited_runs["runs"]:
        run = load_run(run_dir)
        dyn = read_dynamics(run_dir / "dynamics")
        got = run.summary
        assert got.rows == dyn.filter(pl.col("finite")).height
        want = aum(dyn)
        assert got.aum.get_column("sample_id").to_list() == want.get_column("sample_id").to_list()
        assert got.aum.get_column("aum").to_list() == pytest.approx(
            want.get_column("aum").to_list(), rel=1e-6
        )  # float32 margins
        own = dyn if run.extra_class is None else dyn.filter(pl.col("label_id") != run.extra_class)
        assert got.forgetting.rows() == forgetting(own).rows()
        expected = _expected_probs(dyn, run.extra_class, k=len(run.vocabulary))
        assert got.probs.get_column("sample_id").to_list() == sorted(expected)
        for sid, probs, _ in got.probs.iter_rows():
            assert np.allclose(probs, expected[sid], rtol=1e-12, atol=1e-15), sid
