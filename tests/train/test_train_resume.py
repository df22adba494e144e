"""Mid-epoch stop and resume in one process (TensorLoaders): same steps, same learning rates, every
sample once, the same weights as an uninterrupted run; config refusal, --new, checkpoint fallback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from pawpipe.train.fit.checkpoint import LAST, PREVIOUS, latest_checkpoint, load_checkpoint
from pawpipe.train.fit.dynamics import list_parts, read_dynamics
from pawpipe.train.fit.resume import ResumePoint, clean_after, config_differences
from pawpipe.train.fit.run import run_training
from pawpipe.train.rundir.signals import RunSignals

VOCAB = ["happy", "calm", "angry", "scared"]  # as in conftest.py


class StopAt:
    """A loader that asks for a stop (as SIGTERM would) once batch ``batch`` of ``epoch`` is handed out."""

    def __init__(self, loader, signals: RunSignals, *, epoch: int, batch: int) -> None:
        self.loader, self.signals, self.epoch, self.batch = loader, signals, epoch, batch

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.loader.epoch == self.epoch and (self.batch is None or self.loader.position == self.batch):
                self.signals.stop_requested = "SIGTERM"
            yield batch


def _rows(run: Path, event: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["event"] == event]


def _same_run(run: Path, ref: Path, epochs: int) -> None:
    """The record of ``run`` (interrupted and resumed) equals the uninterrupted ``ref``'s."""
    assert [(r["step"], r["lr"]) for r in _rows(run, "train")] == [(r["step"], r["lr"]) for r in _rows(ref, "train")]
    got, want = _rows(run, "eval"), _rows(ref, "eval")
    assert [(r["step"], r["accuracy"]) for r in got] == [(r["step"], r["accuracy"]) for r in want]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-6)
    for epoch in range(epochs):
        got, want = read_dynamics(run / "dynamics", epoch), read_dynamics(ref / "dynamics", epoch)
        assert got["sample_id"].is_unique().all()
        assert (
            got.select("sample_id", "step").rows() == want.select("sample_id", "step").rows()
        )  # same samples, same steps
    mine, theirs = load_checkpoint(run / "checkpoints" / LAST), load_checkpoint(ref / "checkpoints" / LAST)
    assert all(torch.equal(mine["model"][k], theirs["model"][k]) for k in theirs["model"])


@pytest.fixture
def reference(tiny_cfg, loaders, tmp_path: Path):
    """An uninterrupted 2-epoch run of 8 batches per epoch, and the config that made it."""
    cfg = tiny_cfg(**{"schedule.epochs": 2, "run_name": "ref", "optim.ema_decay": 0.9, "eval.every_steps": 3})
    train, val = loaders(n_train=32)
    result = run_training(cfg, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None)
    assert result.finished and result.progress.step == 16
    return cfg, result.run_dir


@pytest.mark.parametrize("epoch,batch", [(1, 3), (0, 8)])
def test_stop_mid_epoch_and_resume_matches_an_uninterrupted_run(reference, loaders, tmp_path: Path, epoch, batch):
    cfg, ref = reference
    run = tmp_path / "runs" / "stopped"
    signals = RunSignals()
    train, val = loaders(n_train=32)
    first = run_training(
        cfg,
        train_loader=StopAt(train, signals, epoch=epoch, batch=batch),
        val_loader=val,
        vocabulary=VOCAB,
        class_weights=None,
        run_dir=run,
        signals=signals,
    )
    assert first.stopped_by == "SIGTERM" and not first.finished
    saved = load_checkpoint(run / "checkpoints" / LAST)["progress"]
    assert (saved["epoch"], saved["batch_in_epoch"], saved["step"]) == (epoch, batch, epoch * 8 + batch)
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"

    train, val = loaders(n_train=32)
    second = run_training(cfg, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None, run_dir=run)
    assert second.finished and second.resumed_from == run / "checkpoints" / LAST and second.progress.step == 16
    _same_run(run, ref, epochs=2)
    resumes = json.loads((run / "run.json").read_text())["resumes"]
    assert [(r["epoch"], r["batch"], r["step"]) for r in resumes] == [(epoch, batch, epoch * 8 + batch)]


def test_stop_during_the_epoch_end_evaluation_evaluates_on_resume(reference, loaders, tmp_path: Path):
    cfg, ref = reference
    run = tmp_path / "runs" / "in_eval"
    signals = RunSignals()
    train, val = loaders(n_train=32)
    # the validation loader asks for the stop on its second batch of the first epoch-end evaluation
    stopping_val = StopAt(val, signals, epoch=0, batch=2)
    cfg_no_mid = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"every_steps": 0})})
    first = run_training(
        cfg_no_mid,
        train_loader=train,
        val_loader=stopping_val,
        vocabulary=VOCAB,
        class_weights=None,
        run_dir=run,
        signals=signals,
    )
    assert first.stopped_by == "SIGTERM"
    saved = load_checkpoint(run / "checkpoints" / LAST)["progress"]
    assert (saved["epoch"], saved["batch_in_epoch"], saved["step"], saved["history"]) == (
        0,
        8,
        8,
        [],
    )  # trained, not evaluated
    train, val = loaders(n_train=32)
    second = run_training(
        cfg_no_mid, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None, run_dir=run
    )
    assert second.finished and [h["step"] for h in second.progress.history] == [8, 16]
    ref_eval = {r["step"]: r["loss"] for r in _rows(ref, "eval") if r["end_of_epoch"]}
    assert {r["step"]: r["loss"] for r in _rows(run, "eval")} == pytest.approx(ref_eval, rel=1e-6)


def test_a_different_config_is_refused_in_one_line_and_new_starts_over(tiny_cfg, loaders, tmp_path: Path):
    cfg = tiny_cfg()
    train, val = loaders()
    first = run_training(cfg, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None)
    run = first.run_dir
    changed = tiny_cfg(
        **{"optim.lr": 2e-3, "schedule.epochs": 2, "record.log_every_steps": 7, "compute.cpu_threads": 1}
    )
    with pytest.raises(ValueError) as refused:
        run_training(changed, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(
        f"{run}: holds a checkpoint of a different run (last.pt at step 4)"
    )
    assert "optim.lr 0.001 -> 0.002, schedule.epochs 1 -> 2;" in message and "--new" in message
    assert "log_every_steps" not in message and "cpu_threads" not in message

    # fields that do not change the weights may differ: the finished run is simply finished
    neutral = tiny_cfg(**{"record.log_every_steps": 7, "checkpoint.every_minutes": 1.0, "eval.every_steps": 2})
    again = run_training(neutral, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None)
    assert again.finished and again.progress.step == 4 and again.resumed_from is not None

    with pytest.raises(ValueError, match="vocabulary"):
        run_training(cfg, train_loader=train, val_loader=val, vocabulary=VOCAB[::-1], class_weights=None)

    train, val = loaders()
    fresh = run_training(changed, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None, new=True)
    assert fresh.resumed_from is None and fresh.progress.step == 8
    aside = [p for p in run.parent.iterdir() if p.name.startswith("tiny.replaced-")]
    assert len(aside) == 1 and load_checkpoint(aside[0] / "checkpoints" / LAST)["progress"]["step"] == 4


def test_config_differences_ignore_neutral_fields():
    a = {
        "seed": 0,
        "out_dir": "a",
        "optim": {"lr": 1.0, "betas": [0.9, 0.99]},
        "record": {"progress": True},
        "data": {"shards": "x", "batch_size": 4},
    }
    b = {
        "seed": 0,
        "out_dir": "b",
        "optim": {"lr": 1.0, "betas": (0.9, 0.99)},
        "record": {"progress": False},
        "data": {"shards": "y", "batch_size": 8},
    }
    assert config_differences(a, b) == [("data.batch_size", 4, 8)]


def test_a_field_the_config_gained_since_the_checkpoint_compares_as_its_default():
    defaults = {"seed": 0, "data": {"batch_size": 64, "jitter": 0.0, "scale": [0.25, 1.0]}}
    saved = {"seed": 0, "data": {"batch_size": 4}}  # written before data.jitter and data.scale existed
    assert (
        config_differences(
            saved, {"seed": 0, "data": {"batch_size": 4, "jitter": 0.0, "scale": (0.25, 1.0)}}, defaults=defaults
        )
        == []
    )
    changed = {"seed": 0, "data": {"batch_size": 4, "jitter": 0.1, "scale": (0.25, 1.0)}}
    assert config_differences(saved, changed, defaults=defaults) == [("data.jitter", 0.0, 0.1)]
    assert config_differences(saved, changed) == [("data.jitter", None, 0.1), ("data.scale", None, (0.25, 1.0))]


def test_latest_checkpoint_falls_back_to_the_previous_one(tiny_cfg, loaders, tmp_path: Path):
    train, val = loaders()
    cfg = tiny_cfg(**{"schedule.epochs": 2, "record.dynamics": False})
    result = run_training(cfg, train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=None)
    folder = result.run_dir / "checkpoints"
    assert load_checkpoint(folder / PREVIOUS)["progress"]["step"] == 4  # the epoch before
    path, state = latest_checkpoint(folder)
    assert path.name == LAST and state["progress"]["step"] == 8
    (folder / LAST).write_bytes((folder / LAST).read_bytes()[:1000])  # a disk that lied about fsync
    path, state = latest_checkpoint(folder)
    assert path.name == PREVIOUS and state["progress"]["step"] == 4
    (folder / PREVIOUS).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no readable checkpoint"):
        latest_checkpoint(folder)
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_clean_after_removes_what_was_written_past_the_checkpoint(tmp_path: Path):
    run = tmp_path / "run"
    (run / "dynamics").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    lines = [{"event": "train", "step": s} for s in (1, 2, 3, 4)] + [{"event": "eval", "step": 4}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"event": "train", "st')
    for name in (
        "epoch_0000.b0000000-0000004.parquet",
        "epoch_0001.b0000000-0000002.parquet",
        "epoch_0001.b0000002-0000003.parquet",
        "epoch_0002.b0000000-0000001.parquet",
    ):
        (run / "dynamics" / name).write_bytes(b"")
    for tmp in (
        run / "dynamics" / ".epoch_0001.b0000003-0000003.parquet.x.tmp",
        run / "checkpoints" / ".last.pt.y.tmp",
        run / ".status.json.z.tmp",
    ):
        tmp.write_bytes(b"partial")
    removed = clean_after(run, ResumePoint(checkpoint=run / "checkpoints" / LAST, own=True, epoch=1, batch=2, step=3))
    assert removed == {"temporary_files": 3, "metrics_lines": 3, "dynamics_parts": 2}
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert [(e, a, b) for e, a, b, _, _ in list_parts(run / "dynamics")] == [(0, 0, 4), (1, 0, 2)]
    assert not [p for p in run.rglob(".*.tmp")]
    assert os.listdir(run / "checkpoints") == []
