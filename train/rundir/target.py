"""Where a run directory may go: never into another tool's output."""

from __future__ import annotations

from pathlib import Path

from pawpipe.common.folders import describe, what_is
from pawpipe.train.config import ConfigError


def check_run_target(out: Path) -> None:
    """A run directory never goes into an ingest or shards output (``--new`` would move their files aside)."""
    found = what_is(out)
    if found in ("ingest clean", "shards build"):
        raise ConfigError(f"--out {out}: this is {describe(found)}, not a run directory; choose another folder")
