"""``train daemon --queue QUEUE``: queued run configs trained one after another, across restarts.

The queue is a folder; every state is a place, and every move between places is a rename::

    QUEUE/pending/NAME.toml    queued by ``train submit`` or dropped in by a person (cp/mv); taken in submission order
    QUEUE/running/NAME.toml    the run in progress (at most one); after a restart it is resumed first
    QUEUE/runs/NAME/           its run directory (``train run --out``): checkpoints, metrics, status.json
    QUEUE/done/NAME.toml       the config of a run that ended, next to
    QUEUE/done/NAME.json       {"state": "finished" | "failed" | "cancelled", final and best metrics, epochs done,
                               exit code, error, ...}
    QUEUE/cancel/NAME          a cancel request for the running run (``train cancel``)
    QUEUE/daemon.lock          one daemon per queue
    QUEUE/queue.lock           held for a moment while a name is chosen and a config moved (submit, cancel, the pick)

Each run is a child process, ``python -m pawpipe.train run --config running/NAME.toml --out runs/NAME``,
so a crash or a leak in one run (GPU memory included) never outlives it. The daemon passes its
signals on to the child: SIGTERM / SIGINT stop the run at its next step with a checkpoint and the
daemon exits 0 leaving it in ``running/`` (the next start resumes it mid-epoch); a second SIGINT
stops both at once; SIGUSR1 checkpoints. The child dies with the daemon (``PR_SET_PDEATHSIG``:
SIGTERM, so it checkpoints even if the daemon is killed with -9). A child that crashes (killed,
out of memory) is resumed from its last checkpoint up to ``max_restarts`` times, then recorded failed;
a run that stops itself with an error (exit 1 or 2: bad config, non-finite loss) is failed at once.

Submission order: ``train submit`` writes the config's place as its first line (``Queue.submit``); a
file dropped in by hand stands at its modification time; equal places go by name. A name already
used (``runs/NAME`` or ``done/NAME.json`` exists; for ``train submit``, a pending one too) gets a
suffix (``NAME-2``), so re-queueing a config never mixes two runs. Files changed in the last
``settle_s`` seconds are left for the next poll (a copy still in progress).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pawpipe.common.atomic import write_json, write_text
from pawpipe.common.contracts.status_file import STATUS_FILE, epochs_done, read_status_file
from pawpipe.common.textwidth import columns, ljust
from pawpipe.train.config import ConfigError, load_train_config
from pawpipe.train.rundir.lock import RunLock, RunLocked
from pawpipe.train.rundir.signals import RunSignals

log = logging.getLogger(__name__)

FINAL_STATES = ("finished", "failed", "cancelled")


QUEUE_LOCK = "queue.lock"  # held while a name is chosen and a config moved: submit, cancel, the daemon's pick
ORDER_MARK = "# train submit: order "  # the first line train submit writes: its place in the queue


@dataclass(frozen=True)
class Queue:
    """A queue folder (module docstring). ``Queue.open`` is the one way in for ``train submit``, ``cancel``,
    ``status`` and the daemon; ``changing`` the one lock under which they choose names and move files."""

    root: Path

    @classmethod
    def open(cls, root: str | Path, *, create: bool = False) -> Queue:
        """The queue at ``root``; a file there is refused, and so is a missing folder unless ``create``
        (``submit`` and the daemon make it; a mistyped ``cancel`` or ``status`` must not)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"{root}: expected a queue folder (pending/, running/, done/...), got a file")
        if not create and not root.is_dir():
            raise ConfigError(f"{root}: no such queue folder; `train submit {root} CONFIG` makes it")
        return cls(root).ensure() if create else cls(root)

    @contextlib.contextmanager
    def changing(self, timeout_s: float = 30.0) -> Iterator[Queue]:
        """Hold ``QUEUE/queue.lock`` (waiting up to ``timeout_s`` for whoever has it): a name chosen under
        it is still free when the file lands, and a config is moved by one process only."""
        lock = RunLock(self.root, name=QUEUE_LOCK, busy="being changed")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                lock.acquire()
                break
            except RunLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        try:
            yield self
        finally:
            lock.release()

    @property
    def pending(self) -> Path:
        return self.root / "pending"

    @property
    def running(self) -> Path:
        return self.root / "running"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def cancel(self) -> Path:
        return self.root / "cancel"

    def ensure(self) -> Queue:
        for folder in (self.pending, self.running, self.runs, self.done, self.cancel):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def used(self, name: str, *, pending: bool = False) -> bool:
        """Whether a run of that name ran or runs (``pending``: or waits in ``pending/``)."""
        return (
            (self.runs / name).exists()
            or (self.done / f"{name}.json").exists()
            or (self.running / f"{name}.toml").exists()
            or (pending and (self.pending / f"{name}.toml").exists())
        )

    def unique(self, name: str, *, pending: bool = False) -> str:
        """``name``, or ``name-2``, ``name-3``... the first not ``used``."""
        candidate, n = name, 1
        while self.used(candidate, pending=pending):
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def submit(self, text: str, name: str, *, source: Path) -> str:
        """Queue a checked config's ``text`` as ``pending/NAME.toml`` after every run queued before it; NAME
        is ``name`` or, when a run has it, ``name-2``... (``unique``). Returns NAME.

        The first line it writes, ``# train submit: order N, TIME, from SOURCE``, is its place: N is the
        clock in ns, one more than the last queued config's when the clock has not moved on since.
        """
        if not name or name.startswith(".") or "/" in name:
            raise ConfigError(f"--name {name!r}: expected a plain file name")
        with self.changing():
            name = self.unique(name, pending=True)
            last = max((self.order(path) for path in self.pending.glob("*.toml")), default=0)
            order = max(time.time_ns(), last + 1)
            when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            write_text(self.pending / f"{name}.toml", f"{ORDER_MARK}{order}, {when}, from {source.resolve()}\n{text}")
        return name

    def order(self, path: Path) -> int:
        """A pending config's place (ns): the order ``submit`` wrote in its first line, else (a file dropped
        in by hand) its modification time; 0 for a file gone meanwhile."""
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                first = handle.readline()
            if first.startswith(ORDER_MARK):
                try:
                    return int(first[len(ORDER_MARK) :].split(",", 1)[0])
                except ValueError:
                    pass  # edited by hand: its time, as any other dropped file
            return path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def pending_in_order(self) -> list[Path]:
        """``pending/*.toml`` in the order the daemon takes them: submission order, the name breaking ties."""
        return sorted(self.pending.glob("*.toml"), key=lambda path: (self.order(path), path.name))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _read_status(run_dir: Path) -> dict[str, Any]:
    """A run's ``status.json`` as written, or {} when it has none yet or it breaks its contract."""
    try:
        return read_status_file(run_dir / STATUS_FILE)
    except (OSError, ValueError):
        return {}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the daemon dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux/glibc: the child just outlives a killed daemon
        pass


def record_result(queue: Queue, name: str, config: Path, state: str, **fields: Any) -> Path:
    """Write ``done/NAME.json`` (first) then move the config to ``done/NAME.toml`` (a restart finishes the move)."""
    status = _read_status(queue.runs / name)
    result = {
        "name": name,
        "state": state,
        "run_dir": str(queue.runs / name) if (queue.runs / name).exists() else None,
        "config": str(queue.done / f"{name}.toml"),
        "started": status.get("started"),
        "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "epochs_done": epochs_done(status),
        "step": status.get("step"),
        "stopped_by": status.get("stopped_by"),
        "final_metrics": status.get("last_metrics"),
        "best": status.get("best"),
        "error": status.get("error"),
        **fields,
    }
    path = queue.done / f"{name}.json"
    write_json(path, result)
    if config.exists():
        os.replace(config, queue.done / f"{name}.toml")
    (queue.cancel / name).unlink(missing_ok=True)
    log.info(
        "queue: %s %s",
        name,
        state,
        extra={"kv": {"run": name, "state": state, "accuracy": (result["final_metrics"] or {}).get("accuracy")}},
    )
    return path


class Daemon:
    def __init__(
        self,
        queue: str | Path,
        *,
        once: bool = False,
        poll_s: float = 5.0,
        settle_s: float = 2.0,
        max_restarts: int = 2,
        python: str = sys.executable,
    ) -> None:
        self.queue = Queue.open(queue, create=True)
        self.once, self.poll_s, self.settle_s = once, poll_s, settle_s
        self.max_restarts, self.python = max_restarts, python
        self.signals = RunSignals(forward=self._forward)
        self.child: subprocess.Popen | None = None
        self.crashes: collections.Counter[str] = collections.Counter()

    def _forward(self, signum: int) -> None:
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def serve(self) -> int:
        """Run queued configs until stopped (or, with ``once``, until nothing is left to run)."""
        with RunLock(self.queue.root, name="daemon.lock", busy="served"):
            self.signals.install()
            try:
                log.info("daemon: serving %s (pid %d)", self.queue.root, os.getpid())
                while self.signals.stop_requested is None:
                    job = self._next()
                    if job is None:
                        if self.once:
                            break
                        time.sleep(self.poll_s)
                        continue
                    self._run(*job)
            finally:
                self.signals.restore()
        log.info(
            "daemon: %s", f"stopped by {self.signals.stop_requested}" if self.signals.stop_requested else "queue empty"
        )
        return 0

    def _next(self) -> tuple[str, Path] | None:
        q = self.queue
        for path in sorted(q.running.glob("*.toml")):
            if (q.done / f"{path.stem}.json").exists():  # recorded, but the move was cut short
                os.replace(path, q.done / path.name)
                continue
            return path.stem, path
        now = time.time()
        with q.changing():
            for path in q.pending_in_order():
                try:
                    if now - path.stat().st_mtime < self.settle_s:
                        continue
                    name = q.unique(path.stem)
                    target = q.running / f"{name}.toml"
                    os.rename(path, target)
                except FileNotFoundError:  # moved by hand meanwhile
                    continue
                if name != path.stem:
                    log.info("queue: %s is already used; running %s as %s", path.stem, path.name, name)
                return name, target
        return None

    def _run(self, name: str, config: Path) -> None:
        q = self.queue
        if (q.cancel / name).exists():
            record_result(q, name, config, "cancelled", exit_code=None)
            return
        try:
            load_train_config(config)
        except ConfigError as exc:
            record_result(q, name, config, "failed", exit_code=None, error=str(exc))
            return
        run_dir = q.runs / name
        lock = RunLock(run_dir)
        while (holder := lock.holder()) is not None and self.signals.stop_requested is None:
            # e.g. the run of a daemon killed with -9, still writing its checkpoint after PR_SET_PDEATHSIG
            log.info("queue: %s is still locked by pid %s; waiting", name, holder.get("pid"))
            time.sleep(max(self.poll_s, 1.0))
        if self.signals.stop_requested is not None:
            return
        command = [self.python, "-m", "pawpipe.train", "run", "--config", str(config), "--out", str(run_dir)]
        log.info("queue: starting %s", name, extra={"kv": {"run": name, "run_dir": str(run_dir)}})
        tail: collections.deque[str] = collections.deque(maxlen=20)
        self.child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        relay = threading.Thread(target=_relay, args=(self.child.stderr, tail), daemon=True)
        relay.start()
        cancelled = False
        while True:
            try:
                code = self.child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if not cancelled and (q.cancel / name).exists():
                    log.info("queue: cancelling %s", name)
                    self.child.send_signal(signal.SIGTERM)
                    cancelled = True
        relay.join(timeout=5)
        self.child = None
        state = _read_status(run_dir).get("state")
        last_lines = "\n".join(tail)
        if (q.cancel / name).exists():
            record_result(q, name, config, "cancelled", exit_code=code)
        elif code == 0 and state == "finished":
            record_result(q, name, config, "finished", exit_code=code)
        elif code == 0:  # stopped by a signal: resumed by the next start (or the next pick)
            log.info("queue: %s stopped at its checkpoint; it resumes first on the next start", name)
        elif code in (1, 2):
            error = _read_status(run_dir).get("error") if state == "failed" else None
            record_result(q, name, config, "failed", exit_code=code, error=error or last_lines or f"exit status {code}")
        else:
            self.crashes[name] += 1
            if self.crashes[name] > self.max_restarts:
                record_result(
                    q,
                    name,
                    config,
                    "failed",
                    exit_code=code,
                    error=f"crashed {self.crashes[name]} times (last exit status {code}): {last_lines}",
                )
            else:
                log.warning(
                    "queue: %s crashed (exit status %s); resuming it from its last checkpoint (%d/%d)",
                    name,
                    code,
                    self.crashes[name],
                    self.max_restarts,
                )


def _relay(stream: Any, tail: collections.deque[str]) -> None:
    """Pass the child's log lines on to the daemon's stderr (journald), keeping the last few for the record."""
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line.rstrip("\n"))


def cancel(queue: str | Path, name: str) -> str:
    """``train cancel``: a pending run is recorded cancelled at once; a running one stops at its next
    step with a checkpoint and is then recorded cancelled by the daemon."""
    q = Queue.open(queue)
    with q.changing():  # the daemon picks under the same lock: the run is either still pending or running
        pending = q.pending / f"{name}.toml"
        if pending.exists():
            target_name = q.unique(name)
            taken = q.done / f"{target_name}.toml"
            os.rename(pending, taken)
            record_result(q, target_name, taken, "cancelled", exit_code=None)
            return f"{name}: cancelled before it started"
        if (q.running / f"{name}.toml").exists():
            (q.cancel / name).touch()
            return (
                f"{name}: cancel requested; the run stops at its next step with a checkpoint and is recorded as "
                "cancelled"
            )
    known = sorted(p.stem for p in (*q.pending.glob("*.toml"), *q.running.glob("*.toml")))
    raise ValueError(f"{q.root}: no pending or running run named {name!r}; expected one of {known}")


def queue_rows(queue: str | Path) -> list[dict[str, Any]]:
    """One row per ended, running and queued run: name, state, epochs done, step, last and best validation
    accuracy, when."""
    q = Queue.open(queue)
    rows = []
    for path in sorted(q.done.glob("*.json")):
        doc = _read_json(path)
        rows.append(
            {
                "name": path.stem,
                "state": doc.get("state"),
                "epochs": doc.get("epochs_done"),
                "step": doc.get("step"),
                "accuracy": (doc.get("final_metrics") or {}).get("accuracy"),
                "best": (doc.get("best") or {}).get("value"),
                "when": doc.get("ended"),
                "note": (doc.get("error") or "").splitlines()[-1:] or None,
            }
        )
    for path in sorted(q.running.glob("*.toml")):
        doc = _read_status(q.runs / path.stem)
        note = doc.get("state")
        if (q.cancel / path.stem).exists():
            note = f"{note}, cancel requested"
        rows.append(
            {
                "name": path.stem,
                "state": "running",
                "epochs": epochs_done(doc),
                "step": doc.get("step"),
                "accuracy": (doc.get("last_metrics") or {}).get("accuracy"),
                "best": (doc.get("best") or {}).get("value"),
                "when": doc.get("updated"),
                "note": note,
            }
        )
    for path in q.pending_in_order():
        rows.append(
            {
                "name": path.stem,
                "state": "pending",
                "epochs": None,
                "step": None,
                "accuracy": None,
                "best": None,
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(path.stat().st_mtime)),
                "note": None,
            }
        )
    for row in rows:
        if isinstance(row["note"], list):
            row["note"] = row["note"][0] if row["note"] else None
    return rows


def format_queue(rows: list[dict[str, Any]]) -> str:
    """The queue as a table: ended runs, the running one, then the pending ones in the order they will run."""
    header = ("name", "state", "epochs", "step", "val_acc", "best", "when", "note")
    table = [header]
    for r in rows:
        table.append(
            (
                r["name"],
                r["state"] or "?",
                "" if r["epochs"] is None else f"{r['epochs']:.2f}",
                "" if r["step"] is None else str(r["step"]),
                "" if r["accuracy"] is None else f"{r['accuracy']:.4f}",
                "" if r["best"] is None else f"{r['best']:.4f}",
                r["when"] or "",
                (r["note"] or "")[:60],
            )
        )
    widths = [
        max(columns(row[i]) for row in table) for i in range(len(header))
    ]  # display width: a Korean run name is wide
    return "\n".join("  ".join(ljust(cell, w) for cell, w in zip(row, widths)).rstrip() for row in table)
