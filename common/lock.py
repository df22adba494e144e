"""One process per folder (a run, a queue, a shards partition): an advisory lock that dies with its process.

The lock is a file in the folder, held with ``flock`` for the life of the process. The kernel
drops it when the process dies, however it dies (``kill -9``, a crash, a reboot), so a stale
lock is simply one nobody holds: the next process takes it over and says so. The file also
names the holder (pid, host, start time) so the refusal message can say who has it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path


class FolderLocked(RuntimeError):
    """Another live process holds this folder's lock."""


class FolderLock:
    def __init__(self, folder: str | Path, *, name: str, busy: str, names: str | Path | None = None) -> None:
        """``name``/``busy``: the lock file in ``folder`` and what the refusal says the folder is
        ("being trained", "served", "being built"); ``names``: what the refusal names, when not ``folder``."""
        self.path = Path(folder) / name
        self.names = Path(names) if names is not None else Path(folder)
        self.busy = busy
        self._fd: int | None = None
        self.took_over: dict | None = None  # the previous holder's record, when it left a stale lock

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"
                if holder
                else "another process"
            )
            raise FolderLocked(
                f"{self.names}: already {self.busy} by {who}; stop it first or use another folder"
            ) from None
        previous = _read(fd)
        if previous:
            self.took_over = previous
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def holder(self) -> dict | None:
        """Who holds the lock now (their record; ``{}`` if unnamed), or None when nobody does. Changes nothing."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty lock file means: released cleanly
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    except (OSError, json.JSONDecodeError):
        return {}
