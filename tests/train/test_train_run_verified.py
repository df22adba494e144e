"""``train run`` on shards that changed after ``shards verify`` passed: a warning line names the changed
files (a JPEG corrupted in place decodes to noise: only the record of the verify can tell); an image that
no longer decodes stops the run in one line naming the shard and the sample, and ``shards verify``."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from pawpipe.shards.cli import main as shards_main
from pawpipe.train.cli import main as train_main

CONFIG = (
    '[data]\nimage_size = 32\nbatch_size = 4\nworkers = 1\nloader = "dali"\n[schedule]\nepochs = 1\nwarmup_steps = 1\n'
    '[compute]\ndevice = "cpu"\ncpu_threads = 1\n[record]\nprogress = false\ndynamics = false\n'
)


@pytest.fixture
def verified(demo_shards: Path, tmp_path: Path, capsys) -> Path:
    shards = tmp_path / "shards"
    shutil.copytree(demo_shards, shards)
    assert shards_main(["verify", str(shards), "--quiet"]) == 0
    capsys.readouterr()
    return shards


def _jpg(shards: Path, n: int = 2) -> tuple[Path, str, int, int]:
    """The n-th sample's JPEG member of train/shard-000001.tar: tar, key, offset, size (from the index)."""
    tar = shards / "train" / "shard-000001.tar"
    fields = tar.with_suffix(".idx").read_text().splitlines()[1 + n].split()
    at = fields.index("jpg")
    return tar, fields[at + 3].split(".")[0], int(fields[at + 1]), int(fields[at + 2])


def _run(shards: Path, tmp_path: Path, capsys, caplog) -> tuple[int, list[str], list[str]]:
    """``train run``: its exit code, its stderr lines and the warnings it logged (pytest holds the log)."""
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = train_main(["run", "--config", str(config), "--data", str(shards), "--out", str(tmp_path / "run")])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return code, capsys.readouterr().err.splitlines(), warnings


def test_a_shard_changed_after_verify_is_named_in_a_warning(verified: Path, tmp_path: Path, capsys, caplog) -> None:
    when = json.loads((verified / "verified.json").read_text())["verified"]
    tar, key, offset, size = _jpg(verified)
    with open(
        tar, "r+b"
    ) as handle:  # same size, header intact: the decoder takes it, only a checksum or the record tells
        handle.seek(offset + size // 2)
        handle.write(bytes(range(64)))
    code, _, warnings = _run(verified, tmp_path, capsys, caplog)
    assert code == 0
    assert warnings == [
        f"{verified / 'train'}: 1 file changed since `shards verify` passed at {when}: train/shard-000001.tar; "
        f"run `shards verify {verified}` before trusting it"
    ]


def test_an_unchanged_verified_split_gives_no_warning(verified: Path, tmp_path: Path, capsys, caplog) -> None:
    code, _, warnings = _run(verified, tmp_path, capsys, caplog)
    assert (code, warnings) == (0, [])


def test_an_image_that_no_longer_decodes_stops_the_run_naming_the_shard_and_sample(
    verified: Path, tmp_path: Path, capsys, caplog
) -> None:
    tar, key, offset, size = _jpg(verified)
    with open(tar, "r+b") as handle:
        handle.seek(offset + 2)
        handle.write(bytes(198))  # the JPEG header segments wiped
    code, err, _ = _run(verified, tmp_path, capsys, caplog)
    assert code == 2
    pattern = (
        rf"train run: error: {re.escape(str(tar))}: key {key} \(sample_id {key}\): cannot decode {key}\.jpg: .+; "
        rf"the shard changed after it was built: `shards verify {re.escape(str(verified))}` names every damaged sample"
    )
    assert re.fullmatch(pattern, err[-1]), err[-1]
