"""``ingest clean``'s config: a TOML file under the flags, every invalid field named in the error."""

from __future__ import annotations

from pathlib import Path

from pawpipe.common.config import load_config
from pawpipe.ingest.cli import main
from pawpipe.ingest.config import CleanConfig


def test_a_config_error_lists_every_invalid_field(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('format = "pascal"\nval_fraction = 1.5\n')
    assert main(["clean", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"ingest: error: {config}: format: Input should be 'auto', 'aihub', 'coco', 'voc', 'yolo' or 'table' (got "
        f"'pascal')\ningest: error: {config}: val_fraction: Input should be less than 1 (got 1.5)\n"
    )
    config.write_text('max_quarantine_fraction = 0\ncolour = "red"\n')  # an unknown key is one more invalid field
    assert (
        main(["clean", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--config", str(config), "--workers", "0"])
        == 2
    )
    assert capsys.readouterr().err == (
        "ingest: error: (command line): workers: Input should be greater than or equal to 1 (got 0)\n"
        f"ingest: error: {config}: max_quarantine_fraction: Input should be greater than 0 (got 0)\n"
        f"ingest: error: {config}: colour: Extra inputs are not permitted (got 'red')\n"
    )
    assert not (tmp_path / "o").exists()


def test_each_line_names_where_its_value_came_from(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.toml"
    clean = ["clean", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--config", str(config)]
    config.write_text("val_fraction = 0.2\n")
    assert main([*clean, "--workers", "0"]) == 2  # a bad flag over a good file
    assert (
        capsys.readouterr().err
        == "ingest: error: (command line): workers: Input should be greater than or equal to 1 (got 0)\n"
    )
    config.write_text("val_fraction = 1.5\n")
    assert main([*clean, "--workers", "2"]) == 2  # a bad file under a good flag
    assert capsys.readouterr().err == f"ingest: error: {config}: val_fraction: Input should be less than 1 (got 1.5)\n"
    assert main([*clean, "--workers", "0"]) == 2  # both
    assert capsys.readouterr().err == (
        f"ingest: error: {config}: val_fraction: Input should be less than 1 (got 1.5)\n"
        "ingest: error: (command line): workers: Input should be greater than or equal to 1 (got 0)\n"
    )
    config.write_text('val_fraction = 0.2\nexecutor = "local"\n')
    assert main([*clean, "--ray-address", "head:6379"]) == 2  # the whole model holds both
    assert capsys.readouterr().err == (
        f"ingest: error: {config} + (command line): (top level): Value error, "
        "ray_address 'head:6379' is only used with executor 'ray', got executor 'local'\n"
    )
    assert not (tmp_path / "o").exists()


def test_flags_alone_name_the_command_line(tmp_path: Path, capsys) -> None:
    assert (
        main(["clean", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--val-fraction", "-0.5", "--workers", "0"])
        == 2
    )
    assert capsys.readouterr().err == (
        "ingest: error: (command line): val_fraction: Input should be greater than or equal to 0 (got -0.5)\n"
        "ingest: error: (command line): workers: Input should be greater than or equal to 1 (got 0)\n"
    )


def test_a_valid_config_loads_to_its_model(tmp_path: Path) -> None:
    config = tmp_path / "clean.toml"
    config.write_text('format = "coco"\nannotations = "a.json"\nval_fraction = 0.2\nseed = 4\n')
    overrides = {"root": tmp_path / "raw", "out": tmp_path / "o", "seed": 7, "workers": None, "labels": ("cat", "dog")}
    assert load_config(config, overrides, CleanConfig) == CleanConfig(
        root=tmp_path / "raw",
        out=tmp_path / "o",
        format="coco",
        annotations="a.json",
        val_fraction=0.2,
        seed=7,
        labels=("cat", "dog"),
    )
