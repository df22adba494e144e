"""``train status`` of a run whose process died: the state says so, whatever status.json last said."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from pawpipe.train.rundir.status import format_status, read_status

# A trainer as far as status and lock go: takes the run's lock, writes "training", waits to be killed.
TRAINER = textwrap.dedent(
    """
    import sys, time
    from pawpipe.train.rundir.lock import RunLock
    from pawpipe.train.rundir.status import StatusWriter
    lock = RunLock(sys.argv[1]).acquire()
    StatusWriter(sys.argv[1]).update(state="training", epoch=0, epochs=3, step=5)
    print("training", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_run_reads_as_died(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "training\n"
        assert read_status(tmp_path)["state"] == "training"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    doc = read_status(tmp_path)
    assert (doc["state"], doc["state_written"]) == ("died", "training")
    assert (
        f"process {proc.pid} is gone" in doc["state_note"] and "rerun the same command to resume" in doc["state_note"]
    )
    assert format_status(doc).startswith("state      died")


def test_a_reused_pid_does_not_make_a_dead_run_look_alive(tmp_path: Path) -> None:
    (tmp_path / "train.lock").write_text("")  # released: nobody trains here
    (tmp_path / "status.json").write_text(
        json.dumps({"state": "training", "pid": os.getpid()})
    )  # a live pid, not the trainer
    assert read_status(tmp_path)["state"] == "died"
