"""Run-directory lock, signals and status, with real processes and real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pawpipe.train.rundir.lock import RunLock, RunLocked
from pawpipe.train.rundir.status import StatusWriter, format_status, read_status

HOLD = textwrap.dedent(
    """
    import sys, time
    from pawpipe.train.rundir.lock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_trainer_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    proc = _hold_lock(tmp_path)
    try:
        with pytest.raises(RunLocked, match=f"already being trained by pid {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    proc = _hold_lock(tmp_path)
    assert RunLock(tmp_path).holder()["pid"] == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert RunLock(tmp_path).holder() is None  # looking changes nothing: the takeover below still sees the record
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock.took_over["pid"] == proc.pid
        assert json.loads((tmp_path / "train.lock").read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    with RunLock(tmp_path) as again:  # released cleanly: no takeover reported
        assert again.took_over is None


SIGNALLED = textwrap.dedent(
    """
    import time
    from pawpipe.train.rundir.signals import RunSignals
    s = RunSignals().install()
    print("ready", flush=True)
    checkpoints = 0
    while s.stop_requested is None:
        checkpoints += s.take_checkpoint_request()
        time.sleep(0.01)
    print("stopped by", s.stop_requested, "checkpoints", checkpoints, flush=True)
    time.sleep(5)  # "writing the final checkpoint": a second SIGINT must not wait for this
    print("clean exit", flush=True)
    """
)


def _start_signalled() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigusr1_checkpoints_and_sigterm_stops_cleanly() -> None:
    proc = _start_signalled()
    os.kill(proc.pid, signal.SIGUSR1)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "stopped by SIGTERM checkpoints 1" in out and "clean exit" in out


def test_second_sigint_exits_at_once() -> None:
    proc = _start_signalled()
    os.kill(proc.pid, signal.SIGINT)
    assert proc.stdout.readline().startswith("stopped by SIGINT")
    start = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=10)
    assert proc.returncode == 130 and time.monotonic() - start < 4


def test_status_is_written_atomically_and_reads_back(tmp_path: Path) -> None:
    status = StatusWriter(tmp_path, every_s=3600)
    status.update(state="training", epoch=1, step=10, images_per_s=12.5, epoch_eta_s=3725)
    status.update(step=11)  # not forced, same state, too soon: not written
    assert read_status(tmp_path)["step"] == 10
    status.update(force=True, step=12, last_metrics={"accuracy": 0.5})
    doc = read_status(tmp_path)
    assert (doc["state"], doc["step"], doc["pid"]) == ("training", 12, os.getpid())
    text = format_status(doc)
    assert "1h02m05s" in text and "accuracy 0.5000" in text
    with pytest.raises(ValueError, match="expected a state"):
        status.update(state="sleeping")


def test_status_fields_are_the_contracts(tmp_path: Path) -> None:
    """A field the contract (common.contracts.status_file) lacks is refused where it is set; a bad
    value read back is one line naming the file and the field."""
    status = StatusWriter(tmp_path, every_s=3600)
    with pytest.raises(ValueError, match=r"status.json: unknown field\(s\) \['loss_now'\]"):
        status.update(state="training", loss_now=1.0)
    assert not (tmp_path / "status.json").exists()
    (tmp_path / "status.json").write_text(json.dumps({"state": "finished", "epoch": "three"}))
    with pytest.raises(ValueError) as caught:
        read_status(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'status.json'}: epoch: expected a valid integer, got 'three'"


def test_status_of_a_dead_process_says_so(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / "status.json").write_text(json.dumps({"state": "training", "pid": proc.pid}))
    assert "is gone" in read_status(tmp_path)["state_note"]
