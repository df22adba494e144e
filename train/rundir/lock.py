"""One trainer per run directory: ``RUN_DIR/train.lock``, the shared folder lock (``common.lock``)."""

from __future__ import annotations

from pathlib import Path

from pawpipe.common.lock import FolderLock, FolderLocked

LOCK_FILE = "train.lock"
RunLocked = FolderLocked


class RunLock(FolderLock):
    def __init__(self, run_dir: str | Path, *, name: str = LOCK_FILE, busy: str = "being trained") -> None:
        """``name``/``busy``: the lock file and what the refusal says the folder is (the daemon's lock
        on a queue folder is ``daemon.lock``, "served")."""
        super().__init__(run_dir, name=name, busy=busy)
