from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from train.dynamics import SCHEMA, DynamicsWriter


def test_row_groups_bound_memory_and_values_round_trip(tmp_path: Path):
    path = tmp_path / "dyn" / "epoch_0002.parquet"
    writer = DynamicsWriter(path, epoch=2, rows_per_group=6)
    for b in range(5):  # 5 batches of 4: a flush every 2 batches (8 rows >= 6)
        ids = [f"s{b}-{i}" for i in range(4)]
        writer.add(ids, step=b, labels=torch.tensor([0, 1, 2, 1]), preds=torch.tensor([0, 2, 2, 1]),
                   loss=torch.full((4,), float(b)), margin=torch.tensor([1.0, -0.5, 2.0, float("nan")]))
        assert writer._buffered < 8
    assert not path.exists()  # published only on close
    writer.close()
    file = pq.ParquetFile(path)
    assert file.schema_arrow == SCHEMA and file.metadata.num_rows == 20 and file.metadata.num_row_groups == 3
    rows = file.read().to_pylist()
    assert rows[5] == pytest.approx({"sample_id": "s1-1", "epoch": 2, "step": 1, "label_id": 1, "pred_id": 2, "loss": 1.0, "margin": -0.5})


def test_abort_leaves_nothing(tmp_path: Path):
    writer = DynamicsWriter(tmp_path / "epoch_0000.parquet", epoch=0, rows_per_group=2)
    writer.add(["a", "b"], step=0, labels=torch.tensor([0, 1]), preds=torch.tensor([0, 1]), loss=torch.zeros(2), margin=torch.ones(2))
    writer.abort()
    assert list(tmp_path.iterdir()) == []
