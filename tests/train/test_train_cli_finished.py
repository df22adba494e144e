"""``train run`` on a run that already finished: the same command says so and does nothing; options
that would change the run are refused, naming each one and the way to get what was asked; options
that change nothing about a finished run are named as ignored; a ``--data`` that is not there is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pawpipe.train.cli import main
from pawpipe.train.fit.run import run_training

VOCAB = ["happy", "calm", "angry", "scared"]  # as in conftest.py


@pytest.fixture
def finished(tiny_cfg, loaders) -> Path:
    train, val = loaders()
    result = run_training(
        tiny_cfg(**{"schedule.epochs": 1}),
        train_loader=train,
        val_loader=val,
        vocabulary=VOCAB,
        class_weights=[1.0] * 4,
    )
    assert result.finished
    return Path(result.run_dir)


def _files(run: Path) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_finished_run_says_already_finished(finished: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["run", "--out", str(finished)]) == 0
    assert capsys.readouterr().out == (
        f"run {finished}: already finished (1 of 1 epochs, stopped by epochs); nothing to resume. "
        f"`train run --new --out {finished}` starts over\n"
    )
    assert not (finished / "checkpoints" / "recovery.pt").exists()


def test_more_epochs_on_a_finished_run_are_refused_naming_the_option_and_the_way(finished: Path, capsys) -> None:
    before = _files(finished)
    capsys.readouterr()
    assert main(["run", "--out", str(finished), "--epochs", "5", "--lr", "0.002"]) == 2
    assert capsys.readouterr().err == (
        f"train run: error: {finished}: finished (1 of 1 epochs, stopped by epochs); it trains no further with other "
        "options: optim.lr 0.001 -> 0.002, schedule.epochs 1 -> 5. To train on for more epochs, start a new run from "
        f"its checkpoint: train run --config {finished}/config.json --out {finished}-longer --resume "
        f"{finished}/checkpoints/last.pt (with the same options); or start over with --new\n"
    )
    assert _files(finished) == before  # nothing written


def test_the_config_file_of_a_finished_run_with_other_options_is_refused_too(finished: Path, capsys) -> None:
    """Without --out the run directory is out_dir/run_name of the config: the same check."""
    capsys.readouterr()
    assert main(["run", "--config", str(finished / "config.json"), "--set", "model.drop_rate=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"train run: error: {finished}: finished (1 of 1 epochs, stopped by epochs); it trains no further "
        "with other options: model.drop_rate 0.2 -> 0.5. To train with them, give it a new run directory "
        "(--out DIR or --name NAME) or start over with --new"
    )


def test_options_that_change_nothing_on_a_finished_run_are_named_as_ignored(finished: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["run", "--out", str(finished), "--set", "data.workers=1", "--set", "record.log_every_steps=9"]) == 0
    assert capsys.readouterr().out == (
        f"run {finished}: already finished (1 of 1 epochs, stopped by epochs); nothing to resume, so these options "
        f"were ignored: data.workers 4 -> 1, record.log_every_steps 1 -> 9. `train run --new --out {finished}` starts "
        "over\n"
    )


def test_a_data_folder_that_does_not_exist_is_an_error_even_on_a_finished_run(
    finished: Path, tmp_path: Path, capsys
) -> None:
    capsys.readouterr()
    missing = tmp_path / "no-such-shards"
    assert main(["run", "--out", str(finished), "--data", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"train run: error: --data: {missing}: no such folder; expected a `shards build` output (with dataset.json)\n"
    )
    recorded = json.loads((finished / "config.json").read_text())
    assert recorded["data"]["shards"] is None and not missing.exists()
