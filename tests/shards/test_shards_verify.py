"""``shards verify`` passes a good build and names the shard and key of every kind of damage."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from pawpipe.shards.cli import main
from pawpipe.shards.verify import verify
from pawpipe.shards.writer import scan_tar


@pytest.fixture
def damaged(small_build: Path, tmp_path: Path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(small_build, out)
    return out


def _first_jpg(out: Path) -> tuple[Path, str, int]:
    tar = out / "train" / "shard-000000.tar"
    member = next(m for m in scan_tar(tar) if m.name.endswith(".jpg"))
    return tar, member.name[: -len(".jpg")], member.offset


def test_good_build_verifies_and_records_each_file_it_checked(damaged: Path, capsys):
    assert main(["verify", str(damaged), "--quiet"]) == 0
    assert capsys.readouterr().out.endswith(
        f"verify: OK: 5 shards, 18 samples (18 decoded with DALI), 3 in failed.parquet; "
        f"recorded in {damaged / 'verified.json'}\n"
    )
    record = json.loads((damaged / "verified.json").read_text())
    checked = [
        "dataset.json",
        "failed.parquet",
        *(str(p.relative_to(damaged)) for p in damaged.glob("*/*") if p.parent.name != "_journal"),
    ]
    assert (record["tool"], record["decoded"], sorted(record["files"])) == ("shards verify", True, sorted(checked))
    assert all(
        record["files"][name] == [os.stat(damaged / name).st_size, os.stat(damaged / name).st_mtime_ns]
        for name in checked
    )


def test_damaged_jpeg_is_named(damaged: Path, capsys):
    assert verify(damaged, quiet=True).errors == [] and (damaged / "verified.json").is_file()
    tar, key, offset = _first_jpg(damaged)
    data = bytearray(tar.read_bytes())
    data[offset + 2 : offset + 200] = bytes(198)  # wipe the JPEG header segments
    tar.write_bytes(bytes(data))
    errors = verify(damaged, quiet=True).errors
    assert any(e.startswith("train/shard-000000.tar: ") and "sha256" in e for e in errors)
    assert any(f"train/shard-000000.tar: key {key}: DALI cannot decode {key}.jpg" in e for e in errors)
    assert main(["verify", str(damaged), "--quiet"]) == 1
    assert f"MISMATCH train/shard-000000.tar: key {key}" in capsys.readouterr().out
    assert not (
        damaged / "verified.json"
    ).exists()  # a verify that failed vouches for nothing, nor does an earlier pass


def test_wrong_label_and_bad_index_are_named(damaged: Path):
    tar = damaged / "train" / "shard-000001.tar"
    cls = next(m for m in scan_tar(tar) if m.name.endswith(".cls"))
    data = bytearray(tar.read_bytes())
    data[cls.offset] = ord("9")
    tar.write_bytes(bytes(data))
    idx = damaged / "val" / "shard-000000.idx"
    idx.write_text(idx.read_text().replace(" 512 1 ", " 1024 1 ", 1))
    errors = verify(damaged, quiet=True).errors
    key = cls.name[: -len(".cls")]
    assert any(e.startswith(f"train/shard-000001.tar: key {key}: .cls b'9'") for e in errors)
    assert any(
        e.startswith("val/shard-000000.tar: index shard-000000.idx does not match the tar (first difference at line 1")
        for e in errors
    )


def test_lost_and_duplicated_samples_are_named(damaged: Path):
    samples = pl.read_parquet(damaged / "train" / "samples.parquet")
    lost = samples["sample_id"][0]
    samples.slice(1).write_parquet(damaged / "train" / "samples.parquet")
    failed = pl.read_parquet(damaged / "failed.parquet")
    twice = samples["sample_id"][-1]
    pl.concat([failed, failed.head(1).with_columns(sample_id=pl.lit(twice), split=pl.lit("train"))]).write_parquet(
        damaged / "failed.parquet"
    )
    errors = verify(damaged, quiet=True, decode=False).errors
    assert any(f"manifest sample {lost} " in e and "in no shard and not in failed.parquet" in e for e in errors)
    assert any(f"sample {twice} is in more than one place" in e for e in errors)
    assert "train/shard-000000.tar: 5 samples in the tar, expected 5 (shards.parquet) and 4 (samples.parquet)" in errors


def test_a_file_that_breaks_its_contract_is_one_line(damaged: Path):
    """A table without a contract column, or a dataset.json with a bad field, is named in one line
    (common.contracts), not read as far as it goes."""
    samples = damaged / "train" / "samples.parquet"
    pl.read_parquet(samples).drop("decode_path").write_parquet(samples)
    (error,) = verify(damaged, quiet=True, decode=False).errors
    assert error.startswith(
        f"{samples}: columns {{'sample_id': String, 'key': String, 'shard': String, 'label_id': Int64, "
        "'reason': String}, expected "
    )
    dataset = damaged / "dataset.json"
    dataset.write_text(dataset.read_text().replace('"num_classes": 3', '"num_classes": "three"'))
    assert verify(damaged, quiet=True, decode=False).errors == [
        f"{dataset}: num_classes: expected a valid integer, got 'three'"
    ]
