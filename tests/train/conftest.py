"""Small, fast pieces for the trainer's tests: 32 px synthetic images, batch 4-8, a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pawpipe.train.config import TrainConfig, load_train_config
from pawpipe.train.data.synthetic import TensorLoader, synthetic_images

VOCAB = ["happy", "calm", "angry", "scared"]

# One intra-op thread: on a shared 2-core machine, two OpenMP threads per process oversubscribe
# the cores and run ~10x slower than one.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    """A TrainConfig for CPU runs of a few steps; keyword overrides use dotted keys."""

    def make(**values) -> TrainConfig:
        base = {
            "out_dir": str(tmp_path / "runs"),
            "run_name": "tiny",
            "data.image_size": 32,
            "data.batch_size": 4,
            "schedule.epochs": 1,
            "schedule.warmup_steps": 1,
            "optim.lr": 1e-3,
            "compute.device": "cpu",
            "record.log_every_steps": 1,
            "record.progress": False,
        }
        base.update(values)
        return load_train_config(values=base)

    return make


@pytest.fixture
def loaders():
    """(train, val) TensorLoaders over learnable synthetic images: 16 train (4 batches of 4), 10 val."""

    def make(n_train: int = 16, n_val: int = 10, batch_size: int = 4, image_size: int = 32, noise: float = 1.0):
        x, y, ids = synthetic_images(n_train, num_classes=len(VOCAB), image_size=image_size, seed=1, noise=noise)
        xv, yv, idv = synthetic_images(n_val, num_classes=len(VOCAB), image_size=image_size, seed=2, noise=noise)
        return (
            TensorLoader(x, y, ids, batch_size=batch_size, train=True, seed=0),
            TensorLoader(xv, yv, idv, batch_size=batch_size, train=False),
        )

    return make


@pytest.fixture(scope="session")
def demo_shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shards build`` of the demo data at 48 px, 8 samples per shard (22 train, 35 val samples); read-only:
    copy it before changing it."""
    from pawpipe.shards.build import build
    from pawpipe.shards.config import ShardConfig

    out = tmp_path_factory.mktemp("demo_shards") / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=out, size=48, max_samples=8, workers=1, quiet=True))
    return out
