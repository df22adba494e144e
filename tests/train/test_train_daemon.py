"""The training daemon with real processes on real shards (DALI on the CPU): SIGUSR1, SIGTERM
mid-epoch and restart, kill -9 during checkpoint writes, stale and live locks, the queue across
daemon restarts (SIGTERM, kill -9 of the daemon, kill -9 of a run, cancel), and a 2-process gloo
run under torchrun, stopped and resumed.

Every run here trains EfficientNet-B0 at 32 px, batch 2, on the 22 training samples of the demo
shards (11 steps per epoch, ~0.1 s each on a 2-core CPU); most of each process's time is imports.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from pawpipe.shards.build import build
from pawpipe.shards.config import ShardConfig
from pawpipe.train.cli import main
from pawpipe.train.config import load_train_config
from pawpipe.train.fit.checkpoint import LAST, latest_checkpoint, load_checkpoint
from pawpipe.train.fit.dynamics import read_dynamics
from pawpipe.train.fit.evaluate import eval_checkpoint
from pawpipe.train.fit.run import train_from_config
from pawpipe.train.fit.schedule import WarmupCosine

REPO = Path(__file__).resolve().parents[2]
BATCHES = 11  # 22 training samples, batch 2


@pytest.fixture(scope="module")
def loader_shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset as shards at 64 px, 8 samples per shard: 22 train, 35 val samples."""
    out = tmp_path_factory.mktemp("daemon_shards") / "shards"
    build(ShardConfig(manifest_dir=demo_clean, out=out, size=64, max_samples=8, workers=1, quiet=True))
    return out


def write_config(path: Path, shards: Path, **sections: dict) -> Path:
    doc = {
        "seed": 3,
        "data": {"shards": str(shards), "image_size": 32, "batch_size": 2, "workers": 1, "loader": "dali"},
        "compute": {"device": "cpu", "cpu_threads": 1},
        "schedule": {"epochs": 2, "warmup_steps": 2},
        "optim": {"lr": 1e-3},
        "record": {"log_every_steps": 1, "status_every_s": 0},
        "checkpoint": {"every_minutes": 0},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    lines = []
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {json.dumps(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def start(args: list[str], log: Path, *, module: str = "pawpipe.train", env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=open(log.with_suffix(".out"), "w"),
        stderr=open(log, "w"),
        env={**os.environ, **(env or {})},
    )


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def wait_for(predicate, proc: subprocess.Popen | None, log: Path, *, timeout: float = 120, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def status_where(run: Path, test) -> object:
    doc = read_json(run / "status.json")
    return doc if doc and doc.get("state") == "training" and test(doc) else None


def rows(run: Path, event: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["event"] == event]


def assert_same_training(run: Path, ref: Path, epochs: int) -> None:
    """Steps and learning rates, the samples of every step, the weights: as in the uninterrupted ``ref``."""
    assert [(r["step"], r["lr"]) for r in rows(run, "train")] == [(r["step"], r["lr"]) for r in rows(ref, "train")]
    for epoch in range(epochs):
        got, want = read_dynamics(run / "dynamics", epoch), read_dynamics(ref / "dynamics", epoch)
        assert got.height == 2 * BATCHES and got["sample_id"].is_unique().all()  # every sample once
        assert got.select("sample_id", "step").rows() == want.select("sample_id", "step").rows()
    mine, theirs = load_checkpoint(run / "checkpoints" / LAST), load_checkpoint(ref / "checkpoints" / LAST)
    assert all(torch.equal(mine["model"][k], theirs["model"][k]) for k in theirs["model"])
    assert [r["loss"] for r in rows(run, "eval")] == pytest.approx([r["loss"] for r in rows(ref, "eval")], rel=1e-6)


def reference_run(config: Path, out: Path, **overrides) -> Path:
    cfg = load_train_config(config, values=overrides)
    result = train_from_config(cfg, run_dir=out)
    assert result.finished
    return out


HOLD = textwrap.dedent(
    """
    import sys, time
    from pawpipe.train.rundir.lock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.slow
def test_sigterm_mid_epoch_then_restart_continues_exactly(loader_shards: Path, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path / "run.toml", loader_shards)
    ref = reference_run(config, tmp_path / "ref")
    run, log = tmp_path / "run", tmp_path / "first.log"
    proc = start(["run", "--config", config, "--out", run], log)
    try:
        wait_for(
            lambda: status_where(run, lambda d: d["epoch"] == 0 and d["batch"] >= 2), proc, log, what="epoch 1 batch 2"
        )
        os.kill(proc.pid, signal.SIGUSR1)  # checkpoint now, and go on
        saved = wait_for(
            lambda: (read_json(run / "status.json") or {}).get("last_checkpoint"), proc, log, what="SIGUSR1 checkpoint"
        )
        assert saved["epoch"] == 0 and 2 <= saved["batch"] < BATCHES and proc.poll() is None
        wait_for(
            lambda: status_where(run, lambda d: d["epoch"] == 1 and d["batch"] >= 3), proc, log, what="epoch 2 batch 3"
        )
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        proc.kill()
    status = read_json(run / "status.json")
    assert (status["state"], status["stopped_by"]) == ("stopped", "SIGTERM")
    progress = load_checkpoint(run / "checkpoints" / LAST)["progress"]
    assert progress["epoch"] == 1 and 3 <= progress["batch_in_epoch"] < BATCHES  # mid-epoch
    assert progress["step"] == BATCHES + progress["batch_in_epoch"] == status["step"]
    assert "`train run --out" in (tmp_path / "first.out").read_text()

    # a live trainer's lock refuses a second one (here a helper process holds it)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", "--out", str(run)]) == 1
        assert f"already being trained by pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()

    again = start(["run", "--out", run], tmp_path / "second.log")  # nothing but the run directory
    assert again.wait(timeout=120) == 0, (tmp_path / "second.log").read_text()
    assert read_json(run / "status.json")["state"] == "finished"
    assert_same_training(run, ref, epochs=2)
    (resume,) = rows(run, "resume")
    assert (resume["epoch"], resume["batch"], resume["step"]) == (1, progress["batch_in_epoch"], progress["step"])
    assert main(["status", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "state      finished" in printed and f"step {2 * BATCHES}" in printed


def _temporaries(folder: Path) -> list[tuple[str, int]]:
    """(name, size) of the temporary files of checkpoint writes in progress."""
    found = []
    try:
        for entry in os.scandir(folder):
            if entry.name.endswith(".tmp"):
                try:
                    found.append((entry.name, entry.stat().st_size))
                except FileNotFoundError:  # renamed meanwhile
                    pass
    except FileNotFoundError:
        pass
    return found


def _kill_when(proc: subprocess.Popen, folder: Path, point: str, rng: random.Random) -> bool:
    """kill -9 ``proc`` at ``point`` of a checkpoint write; True when it was seen at that point."""
    wanted = {
        "temporary file created": lambda name, size: name.startswith(".last.pt."),
        "half written": lambda name, size: name.startswith(".last.pt.") and size > 0,
        "previous kept": lambda name, size: name.startswith(".prev.pt."),  # new file complete, old one being kept
    }.get(point)
    if wanted is None:
        time.sleep(rng.uniform(0.0, 0.4))
    deadline = time.monotonic() + 20
    while wanted is not None and time.monotonic() < deadline and proc.poll() is None:
        if any(wanted(name, size) for name, size in _temporaries(folder)):
            os.kill(proc.pid, signal.SIGKILL)
            return True
    os.kill(proc.pid, signal.SIGKILL)
    return point == "random"


@pytest.mark.slow
def test_kill_9_during_checkpoint_writes_always_restarts_from_an_intact_checkpoint(
    loader_shards: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "run.toml", loader_shards, checkpoint={"every_steps": 1})
    ref = reference_run(config, tmp_path / "ref", **{"checkpoint.every_steps": 0})
    run, rng = tmp_path / "run", random.Random(0)
    steps, hits = [0], []
    for i, point in enumerate(["temporary file created", "half written", "previous kept", "random"]):
        log = tmp_path / f"attempt{i}.log"
        proc = start(["run", "--config", config, "--out", run], log)
        wait_for(lambda: status_where(run, lambda d: d["step"] >= steps[-1] + 2), proc, log, what="training")
        hits.append(_kill_when(proc, run / "checkpoints", point, rng))
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert read_json(run / "train.lock")["pid"] == proc.pid  # the stale lock it leaves behind
        path, state = latest_checkpoint(run / "checkpoints")  # loads: torch.load succeeds, right format
        assert path.name == LAST and state["progress"]["step"] >= steps[-1]
        steps.append(state["progress"]["step"])
    assert hits[:2] == [True, True], hits  # killed with a checkpoint half-way at least there
    log = tmp_path / "final.log"
    final = start(["run", "--out", run], log)
    assert final.wait(timeout=120) == 0, log.read_text()
    assert f"took over the lock of pid {proc.pid}" in log.read_text()
    assert_same_training(run, ref, epochs=2)
    assert not list(run.rglob(".*.tmp"))


def _queue_config(queue: Path, name: str, shards: Path, **sections) -> None:
    write_config(queue / f"{name}.toml.part", shards, **sections).rename(queue / "pending" / f"{name}.toml")


@pytest.mark.slow
def test_queue_runs_configs_in_order_across_daemon_restarts_and_crashes(
    loader_shards: Path, tmp_path: Path, capsys
) -> None:
    queue = tmp_path / "queue"
    (queue / "pending").mkdir(parents=True)
    _queue_config(queue, "a", loader_shards)
    _queue_config(queue, "b", loader_shards, checkpoint={"every_steps": 2})
    _queue_config(queue, "c", loader_shards)
    (queue / "pending" / "d.toml").write_text("[optim]\nlrr = 1\n")  # a typo: failed without starting
    _queue_config(queue, "e", loader_shards, schedule={"epochs": 3})  # cancelled while it runs
    log = tmp_path / "daemon1.log"
    daemon = start(["daemon", "--queue", queue, "--settle-s", "0", "--poll-s", "0.2"], log)
    try:
        wait_for(
            lambda: status_where(queue / "runs" / "a", lambda d: d["epoch"] == 1 and d["batch"] >= 2),
            daemon,
            log,
            what="run a mid-epoch 2",
        )
        assert main(["cancel", "--queue", str(queue), "c"]) == 0
        assert "c: cancelled before it started" in capsys.readouterr().out
        os.kill(daemon.pid, signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, log.read_text()
    finally:
        daemon.kill()
    assert (queue / "running" / "a.toml").exists() and (queue / "pending" / "b.toml").exists()
    assert read_json(queue / "runs" / "a" / "status.json")["state"] == "stopped"
    assert main(["status", "--queue", str(queue)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["name", "state"]
    assert [line.split()[:2] for line in table[1:]] == [
        ["c", "cancelled"],
        ["a", "running"],
        ["b", "pending"],
        ["d", "pending"],
        ["e", "pending"],
    ]

    log = tmp_path / "daemon2.log"
    daemon = start(["daemon", "--queue", queue, "--once", "--settle-s", "0"], log)
    try:  # the daemon dies (kill -9) while b runs: b gets SIGTERM (PR_SET_PDEATHSIG) and stops at a checkpoint
        wait_for(lambda: status_where(queue / "runs" / "b", lambda d: d["step"] >= 3), daemon, log, what="run b step 3")
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)
    finally:
        daemon.kill()
    stopped = wait_for(
        lambda: (d := read_json(queue / "runs" / "b" / "status.json")) and d["state"] != "training" and d,
        None,
        log,
        what="run b to stop after its daemon died",
    )
    assert (stopped["state"], stopped["stopped_by"]) == ("stopped", "SIGTERM") and (
        queue / "running" / "b.toml"
    ).exists()

    log = tmp_path / "daemon3.log"
    daemon = start(["daemon", "--queue", queue, "--once", "--settle-s", "0"], log)
    try:  # b's process dies (kill -9, as the OOM killer would): the daemon resumes it from its checkpoint
        doc = wait_for(
            lambda: status_where(queue / "runs" / "b", lambda d: d["step"] >= stopped["step"] + 2),
            daemon,
            log,
            what="run b resumed",
        )
        os.kill(doc["pid"], signal.SIGKILL)
        wait_for(lambda: status_where(queue / "runs" / "e", lambda d: d["step"] >= 2), daemon, log, what="run e step 2")
        assert main(["cancel", "--queue", str(queue), "e"]) == 0
        assert "e: cancel requested" in capsys.readouterr().out
        assert daemon.wait(timeout=180) == 0, log.read_text()
    finally:
        daemon.kill()
    assert "queue: b crashed (exit status -9); resuming it from its last checkpoint (1/2)" in log.read_text()
    resumed_b = rows(queue / "runs" / "b", "resume")
    assert [r["step"] for r in resumed_b][:1] == [stopped["step"]] and len(resumed_b) == 2
    assert resumed_b[1]["step"] >= stopped["step"] and resumed_b[1]["step"] % 2 == 0  # every_steps = 2
    done = {name: read_json(queue / "done" / f"{name}.json") for name in "abcde"}
    assert {n: d["state"] for n, d in done.items()} == {
        "a": "finished",
        "b": "finished",
        "c": "cancelled",
        "d": "failed",
        "e": "cancelled",
    }
    assert (
        read_json(queue / "runs" / "e" / "status.json")["state"] == "stopped"
    )  # stopped at a step, with its checkpoint
    assert load_checkpoint(queue / "runs" / "e" / "checkpoints" / LAST)["progress"]["step"] == done["e"]["step"] >= 2
    assert done["a"]["ended"] <= done["b"]["started"]  # in order: the resumed run first
    assert (done["a"]["step"], done["b"]["step"]) == (2 * BATCHES, 2 * BATCHES)
    assert done["a"]["final_metrics"]["count"] == 35 and done["a"]["best"]["metric"] == "accuracy"
    assert "optim.lrr: Extra inputs are not permitted" in done["d"]["error"]
    (resume,) = rows(queue / "runs" / "a", "resume")  # a was resumed mid-epoch, not restarted
    assert resume["epoch"] == 1 and 2 <= resume["batch"] < BATCHES and resume["step"] == BATCHES + resume["batch"]
    assert sorted(p.name for p in (queue / "done").glob("*.toml")) == ["a.toml", "b.toml", "c.toml", "d.toml", "e.toml"]
    assert not list((queue / "cancel").iterdir())
    assert not list((queue / "pending").iterdir()) and not list((queue / "running").iterdir())
    assert main(["status", "--queue", str(queue), "--json"]) == 0
    listed = [(r["name"], r["state"]) for r in json.loads(capsys.readouterr().out)]
    assert listed == [("a", "finished"), ("b", "finished"), ("c", "cancelled"), ("d", "failed"), ("e", "cancelled")]


def torchrun(config: Path, run: Path, log: Path) -> subprocess.Popen:
    args = ["--standalone", "--nproc-per-node", "2", "-m", "pawpipe.train", "run", "--config", config, "--out", run]
    return start(args, log, module="torch.distributed.run", env={"OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_two_gloo_ranks_stopped_by_sigterm_and_resumed_equal_an_uninterrupted_two_rank_run(
    loader_shards: Path, tmp_path: Path
) -> None:
    """Each rank resumes its own loader position and random streams: the result is bit-identical.

    (Two ranks x batch 2 are not one process x batch 4 without SyncBatchNorm, which PyTorch runs on
    GPUs only; the exact one-process equivalence of the update is checked in test_train_ddp.py.)
    """
    epochs, steps_per_epoch = 2, 5  # 22 samples: 11 per rank, 5 full batches of 2
    config = write_config(tmp_path / "run.toml", loader_shards, schedule={"epochs": epochs})
    ref, log = tmp_path / "ref", tmp_path / "ref.log"
    assert torchrun(config, ref, log).wait(timeout=300) == 0, log.read_text()[-3000:]
    run, log = tmp_path / "run", tmp_path / "first.log"
    proc = torchrun(config, run, log)
    try:
        wait_for(lambda: status_where(run, lambda d: d["epoch"] == 1 and d["batch"] >= 1), proc, log, what="epoch 2")
        os.kill(proc.pid, signal.SIGTERM)  # the agent passes it on to both workers
        proc.wait(timeout=60)
    finally:
        proc.kill()
    status = read_json(run / "status.json")
    assert status["state"] == "stopped" and status["world_size"] == 2, log.read_text()
    log = tmp_path / "second.log"
    assert torchrun(config, run, log).wait(timeout=300) == 0, log.read_text()[-3000:]

    (resume,) = rows(run, "resume")
    assert resume["epoch"] == 1 and 1 <= resume["batch"] < steps_per_epoch
    total = epochs * steps_per_epoch
    schedule = WarmupCosine(lr=1e-3, min_lr=1e-6, warmup_steps=2, total_steps=total)
    train = rows(run, "train")
    assert [(r["step"], r["lr"]) for r in train] == [(s, schedule.lr_at(s - 1)) for s in range(1, total + 1)]
    assert [(r["step"], r["lr"], r["samples"]) for r in train] == [
        (r["step"], r["lr"], r["samples"]) for r in rows(ref, "train")
    ]
    assert all(r["samples"] == 4 for r in train)  # all-reduced over both ranks
    for epoch in range(epochs):  # each rank its own part files; together every sample once, as in ref
        got, want = read_dynamics(run / "dynamics", epoch), read_dynamics(ref / "dynamics", epoch)
        assert got.height == 2 * 2 * steps_per_epoch and got["sample_id"].is_unique().all()
        assert (
            got.sort("sample_id").select("sample_id", "step", "loss").rows()
            == want.sort("sample_id").select("sample_id", "step", "loss").rows()
        )
    mine, theirs = load_checkpoint(run / "checkpoints" / LAST), load_checkpoint(ref / "checkpoints" / LAST)
    assert mine["model"].keys() == theirs["model"].keys()
    assert all(torch.equal(mine["model"][k], theirs["model"][k]) for k in theirs["model"])
    assert (
        len(mine["ranks"]) == 2 and mine["ranks"][0]["loader"]["rank"] == 0 and mine["ranks"][1]["loader"]["rank"] == 1
    )
    evals = [{k: r[k] for k in ("step", "loss", "nll", "accuracy", "macro_f1", "count")} for r in rows(run, "eval")]
    assert evals == [
        {k: r[k] for k in ("step", "loss", "nll", "accuracy", "macro_f1", "count")} for r in rows(ref, "eval")
    ]
    assert evals[-1]["count"] == 35  # all-reduced: the whole validation set
    # the 2-rank metrics are exactly those of one process evaluating the saved weights
    again = eval_checkpoint(run / "checkpoints" / LAST, loader_shards / "val", device="cpu")
    assert again["accuracy"] == evals[-1]["accuracy"] and again["loss"] == pytest.approx(evals[-1]["loss"], rel=1e-5)
