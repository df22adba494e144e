"""The source registry (``ingest.sources``): one list of formats, each entry's hooks, and what derives from it."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path

import polars as pl
import pytest
from _fixtures_formats import LAYOUTS

from pawpipe.ingest.cli import main
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.sources import AUTO, FORMAT_CHOICES, FORMATS, detect_format, get_source

_PROBED = pl.DataFrame(
    {
        "norm_cx": [0.5],
        "norm_cy": [0.5],
        "norm_w": [0.25],
        "norm_h": [0.5],
        "width": [64],
        "height": [48],
        "bbox_x": [None],
        "bbox_y": [None],
        "bbox_w": [None],
        "bbox_h": [None],
    },
    schema_overrides={c: pl.Float64 for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")},
)


@pytest.mark.parametrize("name", FORMATS)
def test_every_registered_format_is_a_module_with_its_hooks(name: str) -> None:
    module = importlib.import_module(f"pawpipe.ingest.sources.{name}")
    source = get_source(name)
    assert (module.NAME, source.name) == (name, name)
    assert (source.looks_for, source.detect, source.parse) == (module.LOOKS_FOR, module.detect, module.parse)
    assert get_source(name) is source


@pytest.mark.parametrize("name", FORMATS)
def test_post_probe_is_the_identity_unless_the_source_defines_one(name: str) -> None:
    after = get_source(name).post_probe(_PROBED)
    if name == "yolo":  # normalised centre boxes -> pixels once the probe knows the size
        assert after.select("bbox_x", "bbox_y", "bbox_w", "bbox_h").row(0) == (24.0, 12.0, 16.0, 24.0)
    else:
        assert after is _PROBED


def test_unknown_format_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"^unknown format 'pascal'; valid: auto, aihub, coco, voc, yolo, table$"):
        get_source("pascal")


def test_an_undetected_root_says_what_each_format_looks_for(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see")
    with pytest.raises(ValueError) as error:
        detect_format(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}: cannot tell the annotation format (looked for AI Hub 라벨링데이터 folders, a COCO instances "
        "JSON, VOC XML, YOLO txt + class names, a CSV/Parquet table); pass --format"
    )


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_auto_detects_each_layout(tmp_path: Path, layout: str) -> None:
    assert detect_format(LAYOUTS[layout](tmp_path / layout)) == layout


def test_config_accepts_exactly_the_registered_formats() -> None:
    assert FORMAT_CHOICES == (AUTO, *FORMATS)
    assert typing.get_args(CleanConfig.model_fields["format"].annotation) == FORMAT_CHOICES
    assert CleanConfig(root=".", out=".").format == AUTO
    for name in FORMAT_CHOICES:
        assert CleanConfig(root=".", out=".", format=name).format == name
    with pytest.raises(ValueError, match="Input should be 'auto', 'aihub', 'coco', 'voc', 'yolo' or 'table'"):
        CleanConfig(root=".", out=".", format="pascal")


def test_command_line_offers_exactly_the_registered_formats(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["clean", "raw", "--out", "out", "--format", "pascal"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "[--format {" + ",".join(FORMAT_CHOICES) + "}]" in err
    assert err.rstrip().endswith("(choose from " + ", ".join(repr(f) for f in FORMAT_CHOICES) + ")")
