"""Ingest's per-file work in chunks, run by the job's executor (``common.executor``), in order, with progress."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pawpipe.common.executor import current_executor, worker_count
from pawpipe.common.progress import progress

__all__ = ["chunked", "map_chunks", "worker_count"]


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

    The jobs run on the executor ``ingest clean`` installed (local processes, ``workers`` of
    them, or Ray tasks); results stream back one job at a time, so memory holds a few jobs,
    never the dataset.
    """
    bar = progress(sum(sizes), desc=desc, unit=unit, disable=quiet)
    results = current_executor().map(fn, jobs, workers=workers)
    try:
        for result, size in zip(results, sizes):
            bar.update(size)
            yield result
    finally:
        results.close()
        bar.close()
