"""Real shards for the loader tests: the demo dataset cleaned by ``ingest clean`` (session fixture
``demo_clean``), cut by ``shards build`` at 64 px with at most 8 samples per shard.

A test module builds them once with a module-scoped fixture calling ``build_shards``; the folder
is read-only for tests: copy a split (``copy_split``) before tampering with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from pawpipe.shards.build import build
from pawpipe.shards.config import ShardConfig

SIZE = 64  # stored shorter side, px
IMAGE = 32  # loader output, px


def build_shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SHARDS root with ``train/`` (22 samples, 3 shards) and ``val/`` (35 samples, 5 shards)."""
    out = tmp_path_factory.mktemp("loader_shards") / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=out, size=SIZE, max_samples=8, workers=1, quiet=True))
    return out


def samples(split_dir: Path) -> dict[str, int]:
    """sample_id -> label_id, from ``samples.parquet``."""
    frame = pl.read_parquet(split_dir / "samples.parquet")
    return dict(zip(frame["sample_id"].to_list(), frame["label_id"].to_list()))


def copy_split(root: Path, split: str, dest: Path) -> Path:
    """A writable copy of ``root/split`` (with ``dataset.json``) under ``dest``; returns the split folder."""
    shutil.copytree(root / split, dest / split)
    shutil.copy2(root / "dataset.json", dest / "dataset.json")
    return dest / split
