"""Progress reporting for long work: a bar with rate and ETA on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int | None, *, desc: str, unit: str = "it", disable: bool = False) -> tqdm:
    """A progress bar on stderr; when stderr is not a terminal, a line every 10 s (logs stay readable)."""
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        dynamic_ncols=True,
        mininterval=0.2 if tty else 10.0,
        ascii=not tty,
        disable=disable,
        file=sys.stderr,
    )
