"""``train submit QUEUE CONFIG`` queues a checked config for the daemon; ``train status --watch`` follows a run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from test_train_status_dead import TRAINER

from pawpipe.train.cli import main
from pawpipe.train.daemon.daemon import ORDER_MARK, Daemon, Queue, queue_rows, record_result


def _config(path: Path, shards: Path | str, extra: str = "") -> Path:
    path.write_text(f'[data]\nshards = "{shards}"\n[schedule]\nepochs = 3\n{extra}')
    return path


def test_submit_checks_the_config_and_queues_it(demo_shards: Path, tmp_path: Path, capsys) -> None:
    queue, config = tmp_path / "queue", _config(tmp_path / "exp.toml", demo_shards)
    assert main(["submit", str(queue), str(config)]) == 0
    first, rest = (queue / "pending" / "exp.toml").read_text().split("\n", 1)
    assert (
        first.startswith(f"{ORDER_MARK}") and first.endswith(f"from {config.resolve()}") and rest == config.read_text()
    )
    assert "queued exp" in capsys.readouterr().out
    assert main(["submit", str(queue), str(config)]) == 0  # the same config again: a second run, its own name
    assert [r["name"] for r in queue_rows(queue)] == ["exp", "exp-2"]  # the daemon's suffix for a name in use
    _config(config, demo_shards, "epochz = 4\n")
    assert main(["submit", str(queue), str(config), "--name", "bad"]) == 2
    assert "schedule.epochz" in capsys.readouterr().err and not (queue / "pending" / "bad.toml").exists()
    assert not [p for p in (queue / "pending").iterdir() if p.suffix != ".toml"]  # no temporary files left


def test_submit_refuses_a_config_whose_data_folder_is_not_there(tmp_path: Path, capsys) -> None:
    queue, missing = tmp_path / "queue", tmp_path / "no-shards"
    config = _config(tmp_path / "exp.toml", missing)
    assert main(["submit", str(queue), str(config)]) == 2
    assert capsys.readouterr().err == (
        f"train submit: error: {config}: data.shards: {missing}: no such folder; expected a `shards build` output "
        "(with dataset.json)\n"
    )
    config.write_text("[schedule]\nepochs = 3\n")  # the daemon runs it without --data: the config must say where
    assert main(["submit", str(queue), str(config)]) == 2
    assert capsys.readouterr().err == (
        f"train submit: error: {config}: data.shards: expected the shards folder (with dataset.json), got nothing\n"
    )
    assert not list((queue / "pending").glob("*")) if (queue / "pending").exists() else True


def test_the_daemon_takes_runs_in_submission_order(demo_shards: Path, tmp_path: Path) -> None:
    """Not in name order: zeta, alpha, mid as submitted (in the same clock tick, too); a config dropped in
    by hand (cp) comes after them, by its modification time; equal times fall back to the name."""
    queue = tmp_path / "queue"
    for name in ("zeta", "alpha", "mid"):
        assert main(["submit", str(queue), str(_config(tmp_path / f"{name}.toml", demo_shards))]) == 0
    for name in ("hand_b", "hand_a"):
        shutil.copy(tmp_path / "mid.toml", queue / "pending" / f"{name}.toml")
        os.utime(
            queue / "pending" / f"{name}.toml", ns=(time.time_ns() + 10**9,) * 2
        )  # one second on: after the submitted ones
    os.utime(queue / "pending" / "hand_a.toml", ns=(os.stat(queue / "pending" / "hand_b.toml").st_mtime_ns,) * 2)
    expected = ["zeta", "alpha", "mid", "hand_a", "hand_b"]
    assert [r["name"] for r in queue_rows(queue) if r["state"] == "pending"] == expected
    daemon, picked = Daemon(queue, once=True, settle_s=-5.0), []
    while (job := daemon._next()) is not None:  # the daemon's own pick, one after another
        picked.append(job[0])
        record_result(daemon.queue, job[0], job[1], "cancelled", exit_code=None)
    assert picked == expected


def test_submit_cancel_and_status_take_the_queue_through_one_door(demo_shards: Path, tmp_path: Path, capsys) -> None:
    missing, a_file = tmp_path / "no-queue", tmp_path / "file"
    a_file.write_text("")
    assert main(["cancel", "--queue", str(missing), "exp"]) == 2
    assert (
        capsys.readouterr().err
        == f"train cancel: error: {missing}: no such queue folder; `train submit {missing} CONFIG` makes it\n"
    )
    assert not missing.exists()  # a mistyped queue is not made by a cancel
    assert main(["status", "--queue", str(missing)]) == 2
    assert (
        capsys.readouterr().err
        == f"train status: error: {missing}: no such queue folder; `train submit {missing} CONFIG` makes it\n"
    )
    config = _config(tmp_path / "exp.toml", demo_shards)
    for argv in (
        ["submit", str(a_file), str(config)],
        ["cancel", "--queue", str(a_file), "exp"],
        ["status", "--queue", str(a_file)],
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err.endswith(
            f": error: {a_file}: expected a queue folder (pending/, running/, done/...), got a file\n"
        )
    # Four submits of one name at once, as four processes: each gets its own name, none overwrites another.
    queue = tmp_path / "queue"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pawpipe.train", "submit", str(queue), str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4, [p.stderr.read() for p in procs]
    assert sorted(p.name for p in (queue / "pending").iterdir()) == [
        "exp-2.toml",
        "exp-3.toml",
        "exp-4.toml",
        "exp.toml",
    ]
    orders = [Queue(queue).order(p) for p in Queue(queue).pending_in_order()]
    assert len(set(orders)) == 4 and orders == sorted(orders)
    assert main(["cancel", "--queue", str(queue), "exp-3"]) == 0
    assert json.loads((queue / "done" / "exp-3.json").read_text())["state"] == "cancelled"
    assert [r["name"] for r in queue_rows(queue) if r["state"] == "pending"] == [
        p.stem for p in Queue(queue).pending_in_order()
    ] and len(list((queue / "pending").iterdir())) == 3


def test_status_watch_follows_a_run_until_it_ends(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    err = tmp_path / "watch.err"
    try:
        assert proc.stdout.readline() == "training\n"
        with open(err, "w") as stderr:
            watch = subprocess.Popen(
                [sys.executable, "-m", "pawpipe.train", "status", str(tmp_path), "--watch", "0.2"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
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
