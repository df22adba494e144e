"""``ingest clean`` publishes its outputs as one set, and refuses folders it did not write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pawpipe.common.atomic import check_outputs
from pawpipe.ingest.clean import CleanAborted, clean
from pawpipe.ingest.config import CleanConfig

NEEDS = ("manifest.parquet", "labels.json")


def _config(root: Path, out: Path, **kw) -> CleanConfig:
    return CleanConfig(**{"root": root, "out": out, "workers": 1, "quiet": True, **kw})


def test_an_aborted_rerun_replaces_the_whole_set(demo_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    clean(_config(demo_raw, out))
    check_outputs(out, tool="ingest clean", needs=NEEDS)
    first = json.loads((out / "report.json").read_text())
    with pytest.raises(CleanAborted):
        clean(_config(demo_raw, out, max_quarantine_fraction=0.01, seed=7, overwrite=True))
    assert not (out / "manifest.parquet").exists() and not (out / "labels.json").exists()
    assert json.loads((out / "report.json").read_text())["records_in"] == first["records_in"]
    assert json.loads((out / "clean_config.json").read_text())["seed"] == 7
    with pytest.raises(ValueError, match="wrote no manifest.parquet, labels.json"):
        check_outputs(out, tool="ingest clean", needs=NEEDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".clean.lock", "clean"]  # no staged folder left behind


def test_a_mixed_folder_is_refused(demo_clean: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    shutil.copytree(demo_clean, out)
    check_outputs(out, tool="ingest clean", needs=NEEDS)
    (out / "report.json").write_text((out / "report.json").read_text() + " ")
    with pytest.raises(ValueError, match=r"report.json differ from the set `ingest clean` wrote"):
        check_outputs(out, tool="ingest clean", needs=NEEDS)


def test_another_tools_folder_is_refused_unless_overwrite(demo_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    out.mkdir()
    (out / "dataset.json").write_text("{}")
    with pytest.raises(
        ValueError, match=r"this is a `shards build` output, not an `ingest clean` output; pass --overwrite"
    ):
        clean(_config(demo_raw, out))
    assert (out / "dataset.json").exists()
    clean(_config(demo_raw, out, overwrite=True))
    assert not (out / "dataset.json").exists() and (out / "manifest.parquet").exists()


def test_out_naming_a_file_or_a_folder_of_other_files_is_refused(demo_raw: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt: expected an output folder, got a file"):
        clean(_config(demo_raw, tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="expected a new or empty folder .*got a folder of other files"):
        clean(_config(demo_raw, tmp_path, overwrite=True))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_rerun_with_another_config_is_refused_unless_overwrite(demo_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    clean(_config(demo_raw, out))
    before = (out / "manifest.parquet").read_bytes()
    clean(_config(demo_raw, out, workers=2))  # how it runs is free to change: same outputs
    assert (out / "manifest.parquet").read_bytes() == before
    with pytest.raises(
        ValueError,
        match=r"an `ingest clean` output of another config \(seed differ: seed was 0, now 3\); pass --overwrite",
    ):
        clean(_config(demo_raw, out, seed=3))
    assert (out / "manifest.parquet").read_bytes() == before
    clean(_config(demo_raw, out, seed=3, overwrite=True))
    assert json.loads((out / "clean_config.json").read_text())["seed"] == 3
