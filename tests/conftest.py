"""Fixtures shared by every stage's tests: the demo dataset and its cleaning run, built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pawpipe.ingest.clean import clean
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.demo.data import generate


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """The suite's remembered shard checks (``train.data.check_cache``) live in its own temporary
    folder, never the user's cache: no test sees a pass recorded outside this run (child
    processes inherit the variable)."""
    before = os.environ.get("PAWPIPE_CACHE_DIR")
    os.environ["PAWPIPE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("PAWPIPE_CACHE_DIR", None)
    else:
        os.environ["PAWPIPE_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def demo_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded demo dataset (AI Hub layout, every injected fault), 12 videos of 6 frames."""
    root = tmp_path_factory.mktemp("demo") / "raw"
    generate(root, videos=12, frames=6, seed=0)
    return root


@pytest.fixture(scope="session")
def demo_clean(demo_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ingest clean`` output folder for ``demo_raw``."""
    out = tmp_path_factory.mktemp("demo_clean")
    clean(CleanConfig(root=demo_raw, out=out, workers=1, quiet=True))
    return out
