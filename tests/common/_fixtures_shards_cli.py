"""A clean folder for the shards command-line tests (the shards tests' own small dataset)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))

from _fixtures_shards import make_dataset  # noqa: E402


def make_clean(base: Path) -> Path:
    return make_dataset(base, copies=3)
