"""``--data`` means one thing in run, eval and predict: the shards folder or one of its splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _loader_fixtures import build_shards

from pawpipe.train.cli import main
from pawpipe.train.data.dataset import shards_root, split_folder


@pytest.fixture(scope="module")
def shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shards(demo_clean, tmp_path_factory)


def test_root_or_split_in_every_command(shards: Path) -> None:
    assert shards_root(shards) == shards_root(shards / "val") == shards_root(shards / "train") == shards
    assert split_folder(shards) == split_folder(shards / "val") == shards / "val"
    assert split_folder(shards / "train") == shards / "train"


def test_eval_and_predict_take_the_split_of_a_shards_folder(shards: Path, tmp_path: Path, capsys) -> None:
    with_test = tmp_path / "shards"
    shutil.copytree(shards, with_test)
    shutil.copytree(shards / "val", with_test / "test")  # a split folder named test, as a build with test rows writes
    assert split_folder(with_test, "test") == split_folder(with_test / "test", "test") == with_test / "test"
    for name in ("eval", "predict"):
        argv = [
            name,
            "--checkpoint",
            str(tmp_path / "best.pt"),
            "--data",
            str(shards),
            "--split",
            "test",
            "--out",
            str(tmp_path / "p.parquet"),
        ]
        assert main(argv) == 2
        assert (
            f"--data {shards}: expected a test/ split folder in the shards folder, got splits: train, val"
            in capsys.readouterr().err
        )


def test_an_ingest_output_as_data_says_what_it_is(demo_clean: Path, tmp_path: Path, capsys) -> None:
    for argv in (
        ["eval", "--checkpoint", str(tmp_path / "best.pt"), "--data", str(demo_clean)],
        ["run", "--data", str(demo_clean), "--out", str(tmp_path / "run")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert (
            f"--data {demo_clean}: this is an `ingest clean` output, not shards; run `shards build` on it first" in err
        )


def test_a_run_into_another_tools_output_is_refused(shards: Path, demo_clean: Path, capsys) -> None:
    for out, what in ((demo_clean, "an `ingest clean` output"), (shards, "a `shards build` output")):
        assert main(["run", "--data", str(shards), "--out", str(out), "--new"]) == 2
        assert f"--out {out}: this is {what}, not a run directory" in capsys.readouterr().err
