"""A throwaway one-machine Ray cluster for tests and benchmarks, started as a user starts one.

``ray start --head`` in a new session, connected to by address; on exit its processes are
stopped by process id (the session's group, then the raylet's worker processes, which run in
groups of their own), never with ``ray stop``, which would also stop every other Ray cluster
on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Ray's workers are the raylet's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    """The process's command line (Ray workers show ``ray::<task>`` or ``ray::IDLE``), "" when gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class LocalCluster:
    """What a test needs to know about the running cluster."""

    def __init__(self, address: str, pgid: int, temp_dir: Path) -> None:
        self.address = address
        self.pgid = pgid
        self.temp_dir = temp_dir

    def raylet(self) -> int:
        pids = [pid for pid in _group_pids(self.pgid) if "raylet/raylet" in command_line(pid)]
        if len(pids) != 1:
            raise RuntimeError(f"Ray cluster {self.address}: expected one raylet, got {pids}")
        return pids[0]

    def workers(self, task: str | None = None) -> list[int]:
        """Worker processes of the raylet; only those running ``task`` when given."""
        pids = [pid for pid in children(self.raylet()) if command_line(pid).startswith("ray::")]
        pids = [pid for pid in pids if not command_line(pid).endswith("Agent")]
        return [pid for pid in pids if task is None or command_line(pid) == f"ray::{task}"]


@contextmanager
def local_cluster(num_cpus: int) -> Iterator[LocalCluster]:
    """A head node with ``num_cpus`` CPUs on this machine; yields it, stops it on exit."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths are limited to 107 bytes
    port = _free_port()
    ray = Path(sys.executable).with_name("ray")
    argv = [
        str(ray),
        "start",
        "--head",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    start = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    cluster = LocalCluster(f"127.0.0.1:{port}", start.pid, temp_dir)
    try:
        out, _ = start.communicate(timeout=120)
        if start.returncode != 0:
            raise RuntimeError(f"ray start failed ({start.returncode}): {out.decode(errors='replace')[-2000:]}")
        yield cluster
    finally:
        _stop(cluster)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop(cluster: LocalCluster) -> None:
    try:
        workers = children(cluster.raylet())
    except RuntimeError:
        workers = []
    # SIGTERM first lets the raylet and workers exit cleanly; gcs_server ignores it for long, so SIGKILL soon after.
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 20.0)):
        for pid in workers:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            os.killpg(cluster.pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_pids(cluster.pgid) and not any(command_line(p) for p in workers):
                return
            time.sleep(0.1)
