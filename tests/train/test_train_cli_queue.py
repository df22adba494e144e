"""``train submit QUEUE CONFIG`` queues a checked config for the daemon; ``train status --watch`` follows a run."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from test_train_status_dead import TRAINER

from train.cli import main
from train.daemon.daemon import queue_rows


def test_submit_checks_the_config_and_queues_it(tmp_path: Path, capsys) -> None:
    queue, config = tmp_path / "queue", tmp_path / "exp.toml"
    config.write_text("[schedule]\nepochs = 3\n")
    assert main(["submit", str(queue), str(config)]) == 0
    assert (queue / "pending" / "exp.toml").read_bytes() == config.read_bytes()
    assert "queued exp" in capsys.readouterr().out
    assert main(["submit", str(queue), str(config)]) == 0  # the same config again: a second run, its own name
    assert [r["name"] for r in queue_rows(queue)] == ["exp", "exp_2"]
    config.write_text("[schedule]\nepochs = 3\nepochz = 4\n")
    assert main(["submit", str(queue), str(config), "--name", "bad"]) == 2
    assert "schedule.epochz" in capsys.readouterr().err and not (queue / "pending" / "bad.toml").exists()
    assert not [p for p in (queue / "pending").iterdir() if p.suffix != ".toml"]  # no temporary files left


def test_status_watch_follows_a_run_until_it_ends(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    err = tmp_path / "watch.err"
    try:
        assert proc.stdout.readline() == "training\n"
        with open(err, "w") as stderr:
            watch = subprocess.Popen([sys.executable, "-m", "train", "status", str(tmp_path), "--watch", "0.2"],
                                     stdout=subprocess.PIPE, stderr=stderr, text=True)  # fmt: skip
        first = watch.stdout.readline()
        assert first.startswith("state      training"), first
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The rest through the same reader, to EOF: the first readline may have buffered more than its line.
    # A watch that never ends is killed after 60 s, and the test fails on its exit code.
    deadline = threading.Timer(60, watch.kill)
    deadline.start()
    try:
        out = first + watch.stdout.read()
        watch.wait()
    finally:
        deadline.cancel()
    assert watch.returncode == 0 and err.read_text() == ""
    blocks = out.rstrip("\n").split("\n\n")  # one status print per block
    assert len(blocks) >= 2 and blocks[-1].startswith("state      died"), out
    assert all(block.startswith("state      training") for block in blocks[:-1]), out
