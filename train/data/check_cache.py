"""The shard checks that passed, remembered across processes: an unchanged split is checked once, not at every open.

``ShardSet.open`` checks every shard's tar and index (``shardset.check_shard``: a parse of every
index line and a read per sample), ~15 s at 2M samples on 2 cores; an open that finds every pass
remembered takes ~0.7 s (``bench/loader_bench.py --case reopen``). A loader is opened in a process of its
own almost every time: ``train run`` opens its train and val loaders once per run, and every DDP
rank, ``train eval``/``predict`` call and job the daemon starts is a new process. Remembering the
passes in memory alone would therefore almost never be used, so they are kept on disk, one small
JSON file per split folder (``PassedChecks``), and in memory for the process's later opens.

A remembered pass holds only while the check's inputs are the bytes it read:

* each shard's tar and index: absolute path, device and inode, size, ``mtime_ns`` and
  ``ctime_ns``. A write moves mtime and ctime, a replaced file has a new inode, and setting the
  mtime back (``touch -d``, ``os.utime``) still moves the ctime, which no user can set;
* the split's ``shards.parquet`` and ``samples.parquet`` (the recorded sizes, counts and keys the
  check compares with), stamped the same way: when either changes, every shard is checked again;
* the check itself: a digest of the modules that define it and of this one (``check_code``), so
  a changed or stricter check does not trust what the old one passed.

A pass is recorded only after the check returned; a failure is never recorded, and a shard whose
stamp no longer matches loses its entry before it is checked again. A file changed within a
timestamp tick of being stamped could keep its stamp (git's "racily clean" files), so a stamp
is recorded only when both files last changed at least a tick (``_TICK_NS``; 2 s where the
filesystem keeps whole seconds) before it was taken; such a shard is checked again next time.

The files live in the user's cache folder (``$PAWPIPE_CACHE_DIR``, else
``$XDG_CACHE_HOME/pawpipe``, else ``~/.cache/pawpipe``; then ``shard-checks/``), created with mode
0700 and ignored (with a warning) when another user owns it or can write to it: whoever can write
the shards must not be able to vouch for them. At most ``KEEP_FILES`` split files are kept, the
least recently written removed first; deleting the folder costs one check per shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

from pawpipe.common.atomic import write_text

log = logging.getLogger(__name__)

CACHE_ENV = "PAWPIPE_CACHE_DIR"
FOLDER = "shard-checks"
KEEP_FILES = 64
_TICK_NS = 20_000_000  # beyond the kernel's coarse clock tick (4-10 ms), where file timestamps come from
_WHOLE_SECOND_TICK_NS = 2_000_000_000  # filesystems that keep whole (FAT: even) seconds

Stamp = list[int]  # device, inode, size, mtime_ns, ctime_ns

_memory: dict[
    Path, dict[str, Any]
] = {}  # what this process saved, by file: read before the file (which may be unwritable)
_warned: set[Path] = set()


def cache_folder() -> Path:
    """Where the passed checks are kept: ``$PAWPIPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pawpipe``, else
    ``~/.cache/pawpipe``."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pawpipe"
    return Path(root) / FOLDER


def check_code(*modules: Path) -> str:
    """The version a remembered pass must carry: a digest of the source files that define the check,
    and of this one (what a pass records and when it holds)."""
    digest = hashlib.blake2b(digest_size=16)
    for path in (*modules, Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp(path: Path) -> Stamp:
    """Device, inode, size, mtime_ns and ctime_ns of ``path`` (``OSError`` when it is missing)."""
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def settled(stamps: list[Stamp], taken_ns: int) -> bool:
    """Whether every file last changed at least a timestamp tick before ``taken_ns``: a later
    change then moves its mtime and ctime, so the stamps cannot hide it."""
    newest = max(max(s[3], s[4]) for s in stamps)
    whole_seconds = all(s[3] % 1_000_000_000 == 0 and s[4] % 1_000_000_000 == 0 for s in stamps)
    return newest < taken_ns - (_WHOLE_SECOND_TICK_NS if whole_seconds else _TICK_NS)


class PassedChecks:
    """The shards of one split folder whose check passed, with the stamps they had then."""

    def __init__(self, split_dir: Path, tables: list[Path], *, version: str) -> None:
        self.split = os.path.abspath(split_dir)
        self.folder = cache_folder()
        self.path = self.folder / (hashlib.blake2b(self.split.encode(), digest_size=16).hexdigest() + ".json")
        taken = time.time_ns()
        self.head = {"version": version, "split": self.split, "tables": [stamp(t) for t in tables]}
        self.tables_settled = settled(self.head["tables"], taken)
        self.shards: dict[str, Stamp] = {}
        self.changed = False
        doc = _memory.get(self.path)
        if not self._current(doc):  # nothing current saved by this process: the file, perhaps another's
            doc = self._read()
        if self._current(doc):
            self.shards = dict(doc["shards"])

    def holds(self, name: str, stamps: list[Stamp]) -> bool:
        """Whether shard ``name`` passed its check with these stamps (tar, index); a stale entry is dropped."""
        if self.shards.get(name) == [*stamps[0], *stamps[1]]:
            return True
        if self.shards.pop(name, None) is not None:
            self.changed = True
        return False

    def passed(self, name: str, stamps: list[Stamp], taken_ns: int) -> None:
        """Record that shard ``name`` passed its check with the stamps taken at ``taken_ns``, before the check."""
        if self.tables_settled and settled(stamps, taken_ns):
            self.shards[name] = [*stamps[0], *stamps[1]]
            self.changed = True

    def save(self) -> None:
        """Keep the passes for this process and, when the folder is usable, for the next ones."""
        if not self.changed:
            return
        doc = {**self.head, "shards": dict(self.shards)}
        _memory[self.path] = doc
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self._private():
                write_text(self.path, json.dumps(doc, separators=(",", ":")))
                self._prune()
        except OSError as exc:
            self._warn(f"cannot write {exc.filename or self.path}: {exc.strerror or exc}")
        self.changed = False

    def _current(self, doc: Any) -> bool:
        """Whether ``doc`` was saved for this split, its tables as they are now, and this check."""
        return (
            isinstance(doc, dict)
            and {k: doc.get(k) for k in self.head} == self.head
            and isinstance(doc.get("shards"), dict)
        )

    def _read(self) -> Any:
        try:
            if not self._private():
                return None
            with open(self.path, "rb") as handle:
                doc = json.load(handle)
        except (OSError, ValueError):  # no file yet, or one cut short: nothing remembered
            return None
        return doc

    def _private(self) -> bool:
        """Whether the cache folder is this user's alone (raises ``OSError`` when it is missing)."""
        st = os.stat(self.folder)
        if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            mode = stat.filemode(st.st_mode)
            self._warn(f"owned by uid {st.st_uid} with mode {mode}; expected this user's, writable by no one else")
            return False
        return True

    def _prune(self) -> None:
        """Remove the least recently written files beyond ``KEEP_FILES`` (another process may be removing them too)."""
        files = []
        for path in self.folder.glob("*.json"):
            try:
                files.append((path.stat().st_mtime_ns, path))
            except FileNotFoundError:
                continue
        for _, old in sorted(files)[:-KEEP_FILES]:
            old.unlink(missing_ok=True)

    def _warn(self, problem: str) -> None:
        if self.folder not in _warned:
            _warned.add(self.folder)
            log.warning("%s: %s; shard checks are remembered in this process only", self.folder, problem)
