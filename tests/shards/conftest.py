"""Fixtures of the shards tests: the small real dataset and one build of it, made once."""

from __future__ import annotations

from pathlib import Path

import pytest
from _fixtures_shards import SMALL, make_dataset

from pawpipe.shards.build import build
from pawpipe.shards.config import ShardConfig


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``ingest clean`` folder of the small dataset (built once; tests must not modify it)."""
    return make_dataset(tmp_path_factory.mktemp("shards_data"))


@pytest.fixture(scope="session")
def small_build(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shards build`` of the small dataset with 1 worker (read-only: copy it to tamper with it)."""
    out = tmp_path_factory.mktemp("shards_out") / "shards"
    build(ShardConfig(manifest_dir=small_dataset, out=out, **SMALL))
    return out
