"""Where the batch jobs' units of work run: local worker processes, or an existing Ray cluster.

One seam, two implementations. ``Executor.map(fn, jobs)`` yields ``fn(job)`` for every job in
the jobs' order and keeps at most ``window`` jobs in flight (submitted, not yet yielded), so
memory holds a few jobs' inputs and results, never the dataset's, even when ``jobs`` is a
generator. ``fn`` must be a module-level function and the jobs picklable: both
implementations run them in other processes.

* ``LocalExecutor``: a spawn-context process pool on this machine (not fork: the parent holds
  polars' thread pool, which fork would copy mid-flight). One worker runs the jobs in-process.
* ``RayExecutor``: Ray tasks on the cluster at ``address``. A task whose worker process dies
  (kill -9, the OOM killer, a lost node) is run again by Ray, up to ``max_retries`` times;
  the units of work write their outputs atomically, so a retried unit ends in the same bytes.

An entry point opens one (``open_executor``, from the ``ExecutorOptions`` of its config) for
the run; code deep in a stage reaches the run's executor through ``current_executor()`` once
the entry point has installed it with ``use_executor`` (as joblib's ``parallel_backend``).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import multiprocessing
import os
import socket
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, model_validator

RAY_EXTRA = "pawpipe[ray]"
PROJECT_DIR = Path(__file__).resolve().parents[1]  # holds common/, ingest/, shards/: the workers must import them
LAYER_FOLDERS = ("common", "validation_rules", "ingest", "shards", "train")  # installed as pawpipe.<folder>

log = logging.getLogger(__name__)


def import_root() -> Path | None:
    """A folder whose ``pawpipe/`` is this code, for the Ray workers' ``PYTHONPATH``. In a checkout (its
    ``pyproject.toml`` beside the folders, installed editable): ``.pythonpath/`` in it, whose
    ``pawpipe/<folder>`` links to the checkout's folders, made here once. Installed from a wheel
    (``site-packages/pawpipe/common/``): the folder above ``pawpipe/``. None where the links cannot be
    made (a read-only checkout without them): the workers then import the pawpipe installed where they
    run, and the warning says so."""
    if not (PROJECT_DIR / "pyproject.toml").is_file():
        return PROJECT_DIR.parent
    shim = PROJECT_DIR / ".pythonpath"
    try:
        (shim / "pawpipe").mkdir(parents=True, exist_ok=True)
        for name in LAYER_FOLDERS:
            link = shim / "pawpipe" / name
            if not link.is_symlink():
                made = link.with_name(f".{name}.{socket.gethostname()}.{os.getpid()}")  # drivers share storage
                made.unlink(missing_ok=True)
                made.symlink_to(Path("..", "..", name))
                os.replace(made, link)  # atomic: a second driver making the same link at once is harmless
    except OSError as exc:
        log.warning(
            "cannot make %s for the Ray workers (%s): they run the pawpipe installed on their nodes, not this "
            "checkout's code",
            shim,
            exc,
        )
        return None
    return shim


def worker_count(requested: int | None) -> int:
    """``requested`` worker processes, or one per core of this machine."""
    return max(1, requested or os.cpu_count() or 1)


class Executor(ABC):
    """Runs ``fn`` over jobs and yields the results in the jobs' order."""

    kind: str

    @abstractmethod
    def map(self, fn: Callable[[Any], Any], jobs: Iterable, *, workers: int | None = None) -> Iterator[Any]:
        """``fn(job)`` for every job, in order; ``workers``: the parallelism a local pool may use."""

    def close(self) -> None:
        """Release what the executor holds (a cluster connection)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _in_order(
    submit: Callable[[Any], Any], fetch: Callable[[Any], Any], jobs: Iterable, window: int, pending: deque
) -> Iterator[Any]:
    """Submit up to ``window`` jobs ahead, yield the head's result, refill: ordered, bounded."""
    jobs = iter(jobs)

    def refill() -> None:
        pending.extend(submit(job) for job in itertools.islice(jobs, window - len(pending)))

    refill()
    while pending:
        result = fetch(pending[0])
        pending.popleft()
        refill()  # before yielding: the workers stay busy while the caller handles the result
        yield result


class LocalExecutor(Executor):
    """Worker processes on this machine."""

    kind = "local"

    def map(self, fn: Callable[[Any], Any], jobs: Iterable, *, workers: int | None = None) -> Iterator[Any]:
        workers = worker_count(workers)
        if workers <= 1 or (isinstance(jobs, Sized) and len(jobs) <= 1):
            yield from map(fn, jobs)
            return
        pool = multiprocessing.get_context("spawn").Pool(workers)
        pending: deque = deque()
        try:
            yield from _in_order(
                lambda job: pool.apply_async(fn, (job,)), lambda res: res.get(), jobs, 2 * workers, pending
            )
            pool.close()
            pool.join()
        finally:
            pool.terminate()  # an early exit (error, abort): stop the jobs still in flight


class RayExecutor(Executor):
    """Ray tasks on an existing cluster; connects on creation, disconnects on ``close``."""

    kind = "ray"

    def __init__(self, address: str | None = None, *, max_retries: int = 3, window: int | None = None) -> None:
        ray = import_ray()
        self.address = address or "auto"
        self.max_retries = max_retries
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            _check_reachable(self.address)
            try:
                # The workers import this project: from its folder when it sits on shared storage
                # at the same path on every node (or here, on one machine), else from the
                # pawpipe installed on each node.
                root = import_root()
                env = {"env_vars": {"PYTHONPATH": f"{root}{os.pathsep}${{PYTHONPATH}}"}} if root else {}
                ray.init(address=self.address, logging_level=logging.WARNING, runtime_env=env)
            except ConnectionError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(
                    f"executor 'ray': no Ray cluster at address {self.address!r} ({first}); start one with "
                    "`ray start --head`, or pass --ray-address HOST:PORT of its head"
                ) from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.window = window or 2 * max(1, cpus)  # enough queued work to keep every CPU of the cluster busy

    def map(self, fn: Callable[[Any], Any], jobs: Iterable, *, workers: int | None = None) -> Iterator[Any]:
        ray = import_ray()
        task = ray.remote(num_cpus=1, max_retries=self.max_retries)(fn)
        pending: deque = deque()
        try:
            yield from _in_order(task.remote, _get, jobs, self.window, pending)
        finally:
            for ref in pending:  # an early exit (error, abort): drop the work still queued
                ray.cancel(ref)

    def close(self) -> None:
        if self._connected_here:
            import_ray().shutdown()  # disconnects this driver; the cluster stays up


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in one line when nothing listens at HOST:PORT; Ray itself would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto" and the like: Ray resolves them and fails fast itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ValueError(
            f"executor 'ray': no Ray cluster at address {address!r} ({exc.strerror or exc}); start one with "
            "`ray start --head`, or pass --ray-address HOST:PORT of its head"
        ) from None


def _get(ref: Any) -> Any:
    """The task's result; a task's own exception is raised as itself, as a local pool does."""
    ray = import_ray()
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def import_ray():
    """The ``ray`` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            f"executor 'ray': Ray is not installed; install the extra: pip install '{RAY_EXTRA}'"
        ) from None
    return ray


class ExecutorOptions(BaseModel):
    """Config fields that choose the executor; the batch jobs' configs inherit them."""

    executor: Literal["local", "ray"] = "local"  # where the units of work run
    ray_address: str | None = (
        None  # executor "ray": HOST:PORT of the head, or "auto" (RAY_ADDRESS, else this machine's cluster)
    )

    @model_validator(mode="after")
    def _address_needs_ray(self) -> ExecutorOptions:
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError(
                f"ray_address {self.ray_address!r} is only used with executor 'ray', got executor {self.executor!r}"
            )
        return self


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line flags of ``ExecutorOptions`` (None when not given: the config decides)."""
    parser.add_argument(
        "--executor", choices=["local", "ray"], help="run the work in local processes (default) or on a Ray cluster"
    )
    parser.add_argument("--ray-address", help="with --executor ray: HOST:PORT of the Ray head, or auto (default)")


def open_executor(options: ExecutorOptions) -> Executor:
    """The executor ``options`` choose; use it as a context manager to release it."""
    if options.executor == "ray":
        return RayExecutor(options.ray_address)
    return LocalExecutor()


_current: ContextVar[Executor] = ContextVar("executor", default=LocalExecutor())


@contextmanager
def use_executor(executor: Executor) -> Iterator[Executor]:
    """Make ``executor`` the one ``current_executor()`` returns inside the ``with`` block."""
    token = _current.set(executor)
    try:
        yield executor
    finally:
        _current.reset(token)


def current_executor() -> Executor:
    """The executor the running job installed; a ``LocalExecutor`` when none was."""
    return _current.get()
