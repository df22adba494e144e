"""``ingest clean`` end to end on the demo dataset: nothing lost, every fault caught, reruns identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pawpipe.common.contracts.ingest_tables import MANIFEST, QUARANTINE
from pawpipe.ingest.clean import CleanAborted, clean
from pawpipe.ingest.config import CleanConfig
from pawpipe.ingest.demo.check import check

OUTPUTS = ("manifest.parquet", "quarantine.parquet", "orphans.parquet", "labels.json", "report.json", "report.html")


def test_every_record_is_accounted_for(demo_clean: Path) -> None:
    report = json.loads((demo_clean / "report.json").read_text())
    manifest = pl.read_parquet(demo_clean / "manifest.parquet")
    quarantine = pl.read_parquet(demo_clean / "quarantine.parquet")
    assert report["records_in"] == report["clean"] + report["quarantined"]
    assert (report["clean"], report["quarantined"]) == (manifest.height, quarantine.height)
    assert manifest.get_column("sample_id").n_unique() == manifest.height
    assert set(manifest.get_column("sample_id")).isdisjoint(quarantine.get_column("sample_id").drop_nulls())


def test_every_injected_fault_caught_under_its_rule(demo_raw: Path, demo_clean: Path) -> None:
    missed = [r for r in check(demo_raw, demo_clean) if not r["ok"]]
    assert missed == []


def test_schemas_are_the_declared_ones(demo_clean: Path) -> None:
    manifest = pl.read_parquet(demo_clean / "manifest.parquet")
    assert manifest.columns[: len(MANIFEST.names)] == MANIFEST.names
    assert "inspect_emotion" in manifest.columns  # the source's own fields ride along
    assert pl.read_parquet(demo_clean / "quarantine.parquet").columns == QUARANTINE.names
    assert manifest.filter(pl.col("label_id").is_null()).height == 0


def test_splits_kept_from_dataset_and_no_group_leaks(demo_clean: Path) -> None:
    manifest = pl.read_parquet(demo_clean / "manifest.parquet")
    assert set(manifest.get_column("split")) == {"train", "val"}
    assert manifest.group_by("group_id").agg(pl.col("split").n_unique()).get_column("split").max() == 1
    assert json.loads((demo_clean / "report.json").read_text())["groups_in_both_splits"] == []


def test_labels_json(demo_clean: Path) -> None:
    labels = json.loads((demo_clean / "labels.json").read_text())
    manifest = pl.read_parquet(demo_clean / "manifest.parquet")
    assert len(labels["vocabulary"]) == 6
    train = manifest.filter(pl.col("split") == "train")
    for i, name in enumerate(labels["vocabulary"]):
        n = train.filter(pl.col("label") == name).height
        assert labels["counts"]["train"][name] == n
        assert labels["class_weights"]["balanced"][i] == pytest.approx(train.height / (6 * n))


def test_report_has_disagreement_and_histograms(demo_clean: Path) -> None:
    report = json.loads((demo_clean / "report.json").read_text())
    assert sum(v["disagree"] for v in report["label_disagreement"].values()) > 0
    assert sum(report["classes"]["after"].values()) == report["clean"]
    assert "<svg" in (demo_clean / "report.html").read_text()


def test_rerun_writes_identical_bytes(demo_raw: Path, demo_clean: Path, tmp_path: Path) -> None:
    clean(CleanConfig(root=demo_raw, out=tmp_path, workers=2, quiet=True))
    for name in OUTPUTS:
        if name != "report.json":
            assert (tmp_path / name).read_bytes() == (demo_clean / name).read_bytes(), name
    strip = lambda d: {k: v for k, v in d.items() if k != "source_notes"}  # noqa: E731
    assert strip(json.loads((tmp_path / "report.json").read_text())) == strip(
        json.loads((demo_clean / "report.json").read_text())
    )
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_rerun_sweeps_what_a_killed_run_left(demo_raw: Path, tmp_path: Path) -> None:
    (tmp_path / ".manifest.parquet.x1y2z3.tmp").write_bytes(b"PAR1 half written")
    clean(CleanConfig(root=demo_raw, out=tmp_path, workers=1, quiet=True))
    assert not list(tmp_path.glob(".*.tmp"))


def test_too_much_quarantine_aborts_without_manifest(demo_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(CleanAborted, match="manifest not written"):
        clean(CleanConfig(root=demo_raw, out=tmp_path, labels=("nothing",), workers=1, quiet=True))
    assert not (tmp_path / "manifest.parquet").exists()
    assert (tmp_path / "quarantine.parquet").exists()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pawpipe.ingest", "clean", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "nope: expected a dataset folder" in run.stderr


def test_cli_demo_check_passes(demo_raw: Path, demo_clean: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pawpipe.ingest", "demo-check", str(demo_raw), str(demo_clean)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout
    assert "handled as expected" in run.stdout


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo", "table"])
def test_every_format_cleans_end_to_end(fmt: str, tmp_path: Path) -> None:
    from _fixtures_formats import LAYOUTS

    root = LAYOUTS[fmt](tmp_path / "raw")
    result = clean(CleanConfig(root=root, out=tmp_path / "out", workers=1, quiet=True, max_quarantine_fraction=1.0))
    report = result.report
    assert report["format"] == fmt
    assert report["records_in"] == report["clean"] + report["quarantined"] > 0
    assert result.manifest.height > 0
    assert result.manifest.get_column("label_id").null_count() == 0
    assert (result.manifest.get_column("bbox_x") >= 0).all()
    assert (
        result.manifest.get_column("bbox_x") + result.manifest.get_column("bbox_w")
        <= result.manifest.get_column("width")
    ).all()
    assert set(result.manifest.get_column("split")) <= {"train", "val"}


def test_repeated_record_ids_still_get_unique_stable_sample_ids() -> None:
    from pawpipe.ingest.clean import _sample_ids

    frame = pl.DataFrame({"source_file": ["a.json"] * 3, "record": ["7", "7", "8"], "image_path": ["x.jpg"] * 3})
    ids = _sample_ids(frame).to_list()
    assert len(set(ids)) == 3
    assert ids == _sample_ids(frame).to_list()
    assert ids[2] == _sample_ids(frame[2:]).to_list()[0]  # unaffected records keep their id
