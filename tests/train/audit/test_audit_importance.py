"""train scores: EL2N, forgetting counts and AUM per sample, from hand-written and from real training dynamics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pawpipe.train.audit.importance import SCORES, default_el2n_epoch, importance_scores
from pawpipe.train.cli import main
from pawpipe.train.fit.dynamics import part_path, schema

# (sample, epoch, label, pred, margin, probs, finite)
ROWS = [
    ("a", 0, 0, 0, 2.0, [1.0, 0.0], True),
    ("a", 1, 0, 0, 100.0, [1.0, 0.0], False),
    ("a", 1, 0, 0, 2.0, [1.0, 0.0], True),
    ("a", 2, 0, 0, 2.0, [1.0, 0.0], True),
    ("b", 0, 1, 1, 1.0, [0.5, 0.5], True),
    ("b", 1, 1, 0, -1.0, [0.5, 0.5], True),
    ("b", 2, 1, 1, 3.0, [0.0, 1.0], True),
    ("c", 0, 1, 0, -1.0, [1.0, 0.0], True),
    ("c", 1, 1, 0, -1.0, [1.0, 0.0], True),
    ("c", 2, 1, 0, -1.0, [1.0, 0.0], True),
]


def fake_run(root: Path) -> Path:
    """A run directory holding only what the scores read: config.json, run.json and dynamics parts."""
    (root / "dynamics").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"data": {}}))
    (root / "run.json").write_text(json.dumps({"vocabulary": ["calm", "happy"]}))
    for epoch in range(3):
        rows = [r for r in ROWS if r[1] == epoch]
        cols = list(zip(*rows, strict=True))
        table = pa.table(
            [
                pa.array(cols[0]),
                pa.array(cols[1], pa.int32()),
                pa.array([epoch * 3] * len(rows), pa.int64()),
                pa.array(cols[2], pa.int32()),
                pa.array(cols[3], pa.int32()),
                pa.array([0.0] * len(rows), pa.float32()),
                pa.array(cols[4], pa.float32()),
                pa.array(cols[5], pa.list_(pa.float16(), 2)),
                pa.array(cols[6]),
            ],
            schema=schema(2),
        )
        pq.write_table(table, part_path(root / "dynamics", epoch, 0, 1))
    return root


def test_scores_are_exact_on_known_dynamics(tmp_path: Path) -> None:
    scores = importance_scores([fake_run(tmp_path / "run")])
    assert scores.columns == list(SCORES)
    assert scores.rows() == [
        # EL2N at epoch 1 (10 % into 3 epochs, not the first); the skipped update's margin 100 is left out
        ("a", 0, 0.0, 1, 0.0, False, 0.0, 2.0, 3),
        ("b", 1, math.sqrt(0.5), 1, 1.0, False, 1.0, 1.0, 3),
        ("c", 1, math.sqrt(2.0), 1, 0.0, True, 4.0, -1.0, 3),  # never learned: ranked above any count
    ]


def test_el2n_epoch_can_be_chosen_and_must_exist(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run")
    assert importance_scores([run], el2n_epoch=2).get_column("el2n").to_list() == [0.0, 0.0, math.sqrt(2.0)]
    with pytest.raises(ValueError, match="no finite rows at epoch 7; recorded epochs: \\[0, 1, 2\\]"):
        importance_scores([run], el2n_epoch=7)


@pytest.mark.parametrize("epochs, expected", [([0], 0), ([0, 1, 2], 1), (list(range(20)), 2), (list(range(1, 31)), 4)])
def test_default_el2n_epoch_is_ten_percent_in(epochs: list[int], expected: int) -> None:
    assert default_el2n_epoch(epochs) == expected


def test_cli_scores_real_runs(audited_runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain, threshold = audited_runs["runs"]
    out = tmp_path / "scores.parquet"
    assert main(["scores", str(plain), str(threshold), "--out", str(out)]) == 0
    scores = pl.read_parquet(out)
    assert scores.columns == list(SCORES) and sorted(scores.get_column("sample_id")) == sorted(audited_runs["ids"])
    assert scores.get_column("el2n").is_between(0.0, math.sqrt(2.0)).all()
    assert scores.get_column("el2n_epoch").unique().to_list() == [1]
    # every sample trained 3 epochs in the plain run, plus 3 in the threshold run unless it was a threshold sample there
    assert set(scores.get_column("epochs").to_list()) <= {3, 6} and scores.get_column("epochs").sum() > 3 * 32
    assert f"{out}: 32 samples scored (EL2N at epoch 1" in capsys.readouterr().out
    assert main(["scores", str(tmp_path / "nothing"), "--out", str(out)]) == 2
