"""Log lines for people on a terminal, ``key=value`` lines for journald and log files.

``setup_logging`` picks the format from ``stream.isatty()``: on a terminal ``12:03:04 INFO
message``; otherwise one structured line per record, e.g.::

    ts=2025-03-01T12:03:04+0000 level=info logger=pawpipe.train.fit.session pid=4242 msg="eval at step 120: loss 0.71"

Values with spaces or quotes are JSON-quoted, so ``grep``/``awk`` and journald stay usable. Fields
passed as ``extra={"kv": {...}}`` become keys of their own (``step=120 img_per_s=612.4``). Under
torchrun only rank 0 logs below WARNING, and every line carries ``rank=``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.created))
        fields: dict[str, Any] = {
            "ts": ts,
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        rank = os.environ.get("RANK")
        if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1":
            fields["rank"] = rank
        fields["msg"] = record.getMessage()
        fields.update({k: v for k, v in (getattr(record, "kv", None) or {}).items() if v is not None})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value: Any) -> str:
    if isinstance(value, float):
        value = round(value, 6)
    text = str(value)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rank = os.environ.get("RANK")
        return f"[rank {rank}] {line}" if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else line


def setup_logging(level: int = logging.INFO, *, stream: TextIO | None = None, structured: bool | None = None) -> None:
    """One handler on the root logger: human lines on a terminal, ``key=value`` lines otherwise.

    Like ``logging.basicConfig``, it leaves a root logger that someone else already configured
    (pytest's capture, an embedding application) alone, apart from the level.
    """
    root = logging.getLogger()
    rank = int(os.environ.get("RANK", "0"))
    root.setLevel(level if rank == 0 else max(level, logging.WARNING))
    if any(not getattr(h, "pawpipe", False) for h in root.handlers):
        return
    stream = stream or sys.stderr
    if structured is None:
        structured = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter() if structured else HumanFormatter())
    handler.pawpipe = True  # type: ignore[attr-defined]  # replaced by the next call
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


@contextlib.contextmanager
def run_log(path: str | os.PathLike[str], *, enabled: bool = True) -> Iterator[None]:
    """Also write this process's log records (INFO and up, ``key=value``) to ``path`` for the
    duration, appending: a run directory's ``train.log`` holds every start and resume of the run."""
    if not enabled:
        yield
        return
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(KeyValueFormatter())
    handler.setLevel(logging.INFO)
    level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)  # a library caller that set up no logging still gets its train.log
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
