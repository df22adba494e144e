"""The thin CLI: TOML config with flag overrides, recorded config, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from _fixtures_shards import tree_bytes

from pawpipe.shards.cli import main
from pawpipe.shards.config import ShardConfig, load_shard_config


def test_build_from_toml_with_overrides(small_dataset: Path, small_build: Path, tmp_path: Path, capsys):
    config = tmp_path / "shards.toml"
    config.write_text("size = 96\nmax_samples = 7\nquality = 90\nquiet = true\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "build",
                str(small_dataset),
                "--out",
                str(out),
                "--config",
                str(config),
                "--max-samples",
                "5",
                "--workers",
                "1",
            ]
        )
        == 0
    )
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
    assert capsys.readouterr().err == f"shards: error: {config}: sizes: Extra inputs are not permitted (got 96)\n"
    assert (
        main(["build", str(small_dataset), "--out", str(tmp_path / "o"), "--num-partitions", "2", "--partition", "2"])
        == 2
    )
    assert (
        capsys.readouterr().err
        == "shards: error: (command line): (top level): Value error, partition 2 is not below num_partitions 2\n"
    )
    assert main(["build", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--root", str(tmp_path)]) == 2
    assert "nowhere: expected an `ingest clean` output folder, got nothing" in capsys.readouterr().err


def test_a_config_error_lists_every_invalid_field(tmp_path: Path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('size = 4\nquality = 101\ncrop = "box"\n')
    assert main(["build", str(tmp_path / "clean"), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"shards: error: {config}: crop: Input should be 'bbox' or 'full' (got 'box')\n"
        f"shards: error: {config}: size: Input should be greater than or equal to 8 (got 4)\n"
        f"shards: error: {config}: quality: Input should be less than or equal to 100 (got 101)\n"
    )
    config.write_text("max_samples = 0\nseeds = 3\n")  # an unknown key is one more invalid field
    assert (
        main(["build", str(tmp_path / "clean"), "--out", str(tmp_path / "o"), "--config", str(config), "--margin", "3"])
        == 2
    )
    assert capsys.readouterr().err == (
        "shards: error: (command line): margin: Input should be less than or equal to 2 (got 3.0)\n"
        f"shards: error: {config}: max_samples: Input should be greater than or equal to 1 (got 0)\n"
        f"shards: error: {config}: seeds: Extra inputs are not permitted (got 3)\n"
    )
    assert not (tmp_path / "o").exists()


def test_a_valid_config_loads_to_its_model(tmp_path: Path):
    config = tmp_path / "shards.toml"
    config.write_text('crop = "full"\nsize = 96\nquality = 80\n')
    loaded = load_shard_config(
        config, {"manifest_dir": tmp_path / "clean", "out": tmp_path / "o", "size": 128, "seed": None, "workers": 2}
    )
    assert loaded == ShardConfig(
        manifest_dir=tmp_path / "clean", out=tmp_path / "o", crop="full", size=128, quality=80, workers=2
    )


def test_each_line_names_where_its_value_came_from(tmp_path: Path, capsys):
    config = tmp_path / "c.toml"
    build = ["build", str(tmp_path / "clean"), "--out", str(tmp_path / "o"), "--config", str(config)]
    config.write_text("quality = 80\n")
    assert main([*build, "--margin", "3"]) == 2  # a bad flag over a good file
    assert (
        capsys.readouterr().err
        == "shards: error: (command line): margin: Input should be less than or equal to 2 (got 3.0)\n"
    )
    config.write_text("quality = 101\n")
    assert main([*build, "--margin", "0.2"]) == 2  # a bad file under a good flag
    assert (
        capsys.readouterr().err
        == f"shards: error: {config}: quality: Input should be less than or equal to 100 (got 101)\n"
    )
    assert main([*build, "--margin", "3"]) == 2  # both
    assert capsys.readouterr().err == (
        "shards: error: (command line): margin: Input should be less than or equal to 2 (got 3.0)\n"
        f"shards: error: {config}: quality: Input should be less than or equal to 100 (got 101)\n"
    )
    config.write_text("num_partitions = 2\n")
    assert main([*build, "--partition", "2"]) == 2  # the whole model holds both
    assert capsys.readouterr().err == (
        f"shards: error: {config} + (command line): (top level): Value error, partition 2 is not below num_partitions "
        "2\n"
    )
    assert not (tmp_path / "o").exists()


def test_a_rebuild_with_other_options_names_only_the_fields_that_differ(
    small_dataset: Path, small_build: Path, tmp_path: Path, capsys
):
    out = tmp_path / "again"
    shutil.copytree(small_build, out)
    again = ["build", str(small_dataset), "--out", str(out), "--max-samples", "5", "--workers", "1", "--quiet"]
    assert main([*again, "--size", "128", "--quality", "80"]) == 2
    assert capsys.readouterr().err == (
        f"shards: error: {out}: holds a build with other options: size: 96 -> 128, quality: 90 -> 80; "
        "use a new --out folder, or delete this one to rebuild\n"
    )
    assert main([*again, "--size", "96"]) == 0  # the same options: the finished shards are kept
