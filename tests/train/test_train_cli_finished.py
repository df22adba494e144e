"""``train run --out RUN`` on a run that already finished says so instead of pretending to resume."""

from __future__ import annotations

from pathlib import Path

from train.cli import main
from train.fit.run import run_training

VOCAB = ["happy", "calm", "angry", "scared"]  # as in conftest.py


def test_a_finished_run_says_already_finished(tiny_cfg, loaders, capsys) -> None:
    train, val = loaders()
    result = run_training(tiny_cfg(**{"schedule.epochs": 1}), train_loader=train, val_loader=val, vocabulary=VOCAB, class_weights=[1.0] * 4)
    assert result.finished
    capsys.readouterr()
    assert main(["run", "--out", str(result.run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {result.run_dir}: already finished (1 of 1 epochs, stopped by epochs)")
    assert "--new" in out and not (Path(result.run_dir) / "checkpoints" / "recovery.pt").exists()
