"""Crash and resume: a real ``python -m pawpipe.shards build`` killed with SIGKILL at several moments,
then rerun, ends byte-identical to an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _fixtures_shards import make_dataset, tree_bytes

from pawpipe.shards.build import build
from pawpipe.shards.config import ShardConfig
from pawpipe.shards.verify import verify

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"size": 96, "max_samples": 3, "quiet": True}


def _start(clean: Path, out: Path, workers: int) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "pawpipe.shards",
        "build",
        str(clean),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--size",
        "96",
        "--max-samples",
        "3",
        "--quiet",
    ]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _journal(out: Path) -> int:
    return len(list((out / "_journal").glob("*/*.json")))


def _kill_when(proc: subprocess.Popen, ready, *, whole_group: bool = True, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if whole_group:
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers at once, like a node crash or OOM kill
    else:
        os.kill(proc.pid, signal.SIGKILL)  # `kill -9 <pid>`: the workers are orphaned and must stop on their own
    proc.communicate()


def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of the killed run {pgid} still alive after {timeout} s")


@pytest.mark.slow
def test_kill_9_at_any_moment_then_resume_gives_the_same_bytes(tmp_path: Path):
    clean = make_dataset(tmp_path / "data", copies=8)  # ~90 samples in ~30 planned shards
    reference = tmp_path / "reference"
    build(ShardConfig(manifest_dir=clean, out=reference, workers=1, **OPTIONS))
    total = _journal(reference)

    out = tmp_path / "crashed"
    rng = random.Random(0)
    kills = [
        ("journal", 2, 2, True),  # early, while workers hold shards in flight
        ("journal", total // 2, 2, False),  # only the main process: orphaned workers stop by themselves
        ("journal", total - 8, 1, True),
        ("delay", rng.uniform(0.3, 1.5), 2, True),  # whatever it was doing then (startup, a write, finalize)
    ]
    for kind, when, workers, group in kills:
        proc = _start(clean, out, workers)
        start = time.monotonic()
        ready = (lambda: _journal(out) >= when) if kind == "journal" else (lambda: time.monotonic() - start >= when)
        _kill_when(proc, ready, whole_group=group)
        if kind == "journal":
            assert proc.returncode == -signal.SIGKILL and not (out / "dataset.json").exists(), (kind, when)
            assert _journal(out) < total or not group  # orphans may finish the shard they hold
        _wait_group_gone(proc.pid)
    proc = _start(clean, out, 2)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert "already finished" in stdout.decode()
    assert not list(out.rglob("*.partial"))
    assert tree_bytes(out) == tree_bytes(reference)
    assert verify(out, quiet=True).errors == []
