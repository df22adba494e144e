"""The thin CLI: TOML config with flag overrides, recorded config, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from _fixtures_shards import tree_bytes

from shards.cli import main


def test_build_from_toml_with_overrides(small_dataset: Path, small_build: Path, tmp_path: Path, capsys):
    config = tmp_path / "shards.toml"
    config.write_text('size = 96\nmax_samples = 7\nquality = 90\nquiet = true\n')
    out = tmp_path / "out"
    assert main(["build", str(small_dataset), "--out", str(out), "--config", str(config), "--max-samples", "5", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "5 planned shards, 5 built" in printed and "3 failed" in printed and "train:" in printed
    recorded = json.loads((out / "build_config.json").read_text())
    assert recorded["options"]["max_samples"] == 5 and recorded["options"]["size"] == 96
    assert recorded["root"] == str((small_dataset.parent / "raw").resolve())
    assert tree_bytes(out) == tree_bytes(small_build)


def test_bad_options_exit_2(small_dataset: Path, tmp_path: Path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("sizes = 96\n")
    assert main(["build", str(small_dataset), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert "field 'sizes'" in capsys.readouterr().err
    assert main(["build", str(small_dataset), "--out", str(tmp_path / "o"), "--num-partitions", "2", "--partition", "2"]) == 2
    assert "partition 2 is not below num_partitions 2" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--root", str(tmp_path)]) == 2
    assert "nowhere: expected an `ingest clean` output folder, got nothing" in capsys.readouterr().err
