"""Two real tiny training runs on synthetic images with four flipped labels: an ordinary run and a
threshold-sample run, and the manifest they stand for."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from pawpipe.train.data.synthetic import TensorLoader, synthetic_images
from pawpipe.train.data.threshold import with_threshold_samples
from pawpipe.train.fit.run import run_training

VOCAB = ["happy", "calm", "angry", "scared"]
FLIPPED = [0, 5, 10, 15]  # positions whose label is moved to the next class


@pytest.fixture(scope="session")
def audited_runs(tmp_path_factory: pytest.TempPathFactory):
    from pawpipe.train.config import load_train_config as load_config

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("audit_runs")
    x, y, ids = synthetic_images(32, num_classes=len(VOCAB), image_size=32, seed=1)
    noisy = y.clone()
    noisy[FLIPPED] = (y[FLIPPED] + 1) % len(VOCAB)
    xv, yv, idv = synthetic_images(8, num_classes=len(VOCAB), image_size=32, seed=2)
    runs = []
    for name, threshold in (("plain", False), ("threshold", True)):
        torch.manual_seed(0)
        cfg = load_config(
            values={
                "out_dir": str(base),
                "run_name": name,
                "data.image_size": 32,
                "data.batch_size": 8,
                "schedule.epochs": 3,
                "schedule.warmup_steps": 1,
                "optim.lr": 3e-3,
                "compute.device": "cpu",
                "record.progress": False,
                "audit.threshold_samples": threshold,
            }
        )
        train = TensorLoader(x, noisy, ids, batch_size=8, train=True, seed=0)
        val = TensorLoader(xv, yv, idv, batch_size=8, train=False)
        vocabulary, weights = VOCAB, None
        if threshold:
            train, vocabulary, weights = with_threshold_samples(train, VOCAB, weights, cfg.audit)
        runs.append(
            run_training(cfg, train_loader=train, val_loader=val, vocabulary=vocabulary, class_weights=weights).run_dir
        )
    manifest = pl.DataFrame(
        {
            "sample_id": ids,
            "image_path": [f"frames/{s}.jpg" for s in ids],
            "group_id": [f"video{i // 4}" for i in range(32)],
            "split": ["train"] * 32,
            "label": [VOCAB[i] for i in noisy.tolist()],
        }
    )
    (base / "clean").mkdir()
    manifest.write_parquet(base / "clean" / "manifest.parquet")
    return {"runs": runs, "clean": base / "clean", "ids": ids, "flipped": [ids[i] for i in FLIPPED], "base": base}
