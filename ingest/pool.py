"""The one process pool every stage uses for I/O-bound per-file work: chunked, ordered, with progress."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ingest.progress import progress


def worker_count(requested: int | None) -> int:
    return max(1, requested or os.cpu_count() or 1)


def chunked(items: Sequence, *, workers: int, max_chunk: int = 256) -> list[Sequence]:
    """Split ``items`` into chunks small enough to balance ``workers`` and bound memory per task."""
    size = max(1, min(max_chunk, len(items) // (workers * 8) or 1))
    return [items[i : i + size] for i in range(0, len(items), size)]


def map_chunks(
    fn: Callable[[Any], Any],
    jobs: Sequence,
    *,
    sizes: Sequence[int],
    workers: int | None,
    desc: str,
    unit: str,
    quiet: bool = False,
) -> Iterator[Any]:
    """Yield ``fn(job)`` for every job, in order, with a progress bar advancing by ``sizes[i]``.

    With more than one worker and job the jobs run in a spawn-context pool (not fork: the
    parent holds polars' thread pool, which fork would copy mid-flight); results stream back
    one job at a time, so memory holds a few jobs, never the dataset.
    """
    workers = worker_count(workers)
    bar = progress(sum(sizes), desc=desc, unit=unit, disable=quiet)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        results = pool.imap(fn, jobs) if pool is not None else map(fn, jobs)
        for result, size in zip(results, sizes):
            bar.update(size)
            yield result
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
