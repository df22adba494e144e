from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pawpipe.train.fit.checkpoint import TrainProgress
from pawpipe.train.fit.dynamics import DynamicsWriter, read_dynamics, schema


def _add(
    writer: DynamicsWriter, ids: list[str], step: int, *, loss: float = 1.0, progress: TrainProgress | None = None
) -> None:
    n = len(ids)
    writer.add(
        ids,
        step=step,
        labels=torch.zeros(n, dtype=torch.int64),
        preds=torch.ones(n, dtype=torch.int64),
        loss=torch.full((n,), loss),
        margin=torch.full((n,), -0.5),
        probs=torch.tensor([[0.25, 0.75]] * n),
        progress=progress,
    )


def test_row_groups_bound_memory_and_values_round_trip(tmp_path: Path):
    path = tmp_path / "dyn" / "epoch_0002.parquet"
    writer = DynamicsWriter(path, epoch=2, rows_per_group=6)
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3], [0.0, 0.0, 1.0], [0.2, 0.7, 0.1]])
    for b in range(5):  # 5 batches of 4: a flush every 2 batches (8 rows >= 6)
        ids = [f"s{b}-{i}" for i in range(4)]
        writer.add(
            ids,
            step=b,
            labels=torch.tensor([0, 1, 2, 1]),
            preds=torch.tensor([0, 2, 2, 1]),
            loss=torch.full((4,), float(b)),
            margin=torch.tensor([1.0, -0.5, 2.0, float("nan")]),
            probs=probs,
        )
        assert writer._buffered < 8
    assert not path.exists()  # published only on close
    writer.close()
    file = pq.ParquetFile(path)
    assert file.schema_arrow == schema(3) and file.metadata.num_rows == 20 and file.metadata.num_row_groups == 3
    rows = file.read().to_pylist()
    assert rows[5] == {
        "sample_id": "s1-1",
        "epoch": 2,
        "step": 1,
        "label_id": 1,
        "pred_id": 2,
        "loss": 1.0,
        "margin": -0.5,
        "probs": [float(np.float16(v)) for v in (0.1, 0.6, 0.3)],
        "finite": True,
    }
    assert [r["finite"] for r in rows[:4]] == [True, True, True, False]  # no trainer progress: a NaN row is not finite


def test_finite_follows_the_update_decision(tmp_path: Path):
    """Step 1 is skipped by the trainer: its rows (both micro-batches) are marked, though their losses are finite."""
    progress = TrainProgress()
    writer = DynamicsWriter(tmp_path / "epoch_0000.parquet", epoch=0, rows_per_group=1)  # flush at every add
    for step, skip in ((0, False), (1, True), (2, False)):
        for micro in range(2):  # accumulate = 2
            _add(writer, [f"{step}-{micro}"], step, progress=progress)
            assert writer._buffered == micro + 1  # the step being trained waits for its decision
        progress.nonfinite_total += skip  # what Trainer._update does
        progress.step += 1
    writer.close()
    frame = pq.read_table(writer.path).to_pylist()
    assert [(r["sample_id"], r["finite"]) for r in frame] == [
        ("0-0", True),
        ("0-1", True),
        ("1-0", False),
        ("1-1", False),
        ("2-0", True),
        ("2-1", True),
    ]


def test_closing_before_the_decision_is_an_error(tmp_path: Path):
    writer = DynamicsWriter(tmp_path / "epoch_0000.parquet", epoch=0)
    _add(writer, ["a"], 0, progress=TrainProgress())
    with pytest.raises(RuntimeError, match="step 0 is not decided"):
        writer.close()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing(tmp_path: Path):
    writer = DynamicsWriter(tmp_path / "epoch_0000.parquet", epoch=0, rows_per_group=2)
    _add(writer, ["a", "b"], 0)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_read_dynamics_of_an_empty_folder_has_the_columns(tmp_path: Path):
    assert read_dynamics(tmp_path).columns == schema(0).names


def test_the_writer_follows_the_contract_the_audit_reads_by():
    """``train.fit.dynamics.schema`` is the contract's; the audit reads these columns by name."""
    from pawpipe.common.contracts.dynamics_table import dynamics_schema

    assert schema is dynamics_schema
    assert dynamics_schema(4).names == [
        "sample_id",
        "epoch",
        "step",
        "label_id",
        "pred_id",
        "loss",
        "margin",
        "probs",
        "finite",
    ]
    assert str(dynamics_schema(4).field("probs").type) == "fixed_size_list<item: halffloat>[4]"
