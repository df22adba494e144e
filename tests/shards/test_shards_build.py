"""``shards build`` on real files: failed-sample accounting, determinism across worker counts
and partitions, finalize, the journal, config checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from _fixtures_shards import BAD, SMALL, make_dataset, tree_bytes

from pawpipe.common.contracts.dataset_file import DATASET_FILE, DatasetFile
from pawpipe.common.contracts.ingest_tables import polars_schema
from pawpipe.common.contracts.shard_tables import FAILED, FAILED_FILE, SAMPLES, SAMPLES_FILE, SHARDS, SHARDS_FILE
from pawpipe.shards import build as build_mod
from pawpipe.shards.build import BuildAborted, build
from pawpipe.shards.config import ShardConfig
from pawpipe.shards.verify import verify


def _config(clean: Path, out: Path, **kw) -> ShardConfig:
    return ShardConfig(manifest_dir=clean, out=out, **{**SMALL, **kw})


def test_every_manifest_row_is_in_one_shard_or_in_failed(small_dataset: Path, small_build: Path):
    manifest = pl.read_parquet(small_dataset / "manifest.parquet")
    failed = pl.read_parquet(small_build / "failed.parquet")
    bad = manifest.filter(pl.col("image_path").str.split("/").list.last().is_in(list(BAD)))
    assert sorted(failed["sample_id"]) == sorted(bad["sample_id"])
    for row in failed.join(bad, on="sample_id").iter_rows(named=True):
        assert row["reason"] == BAD[row["image_path"].rsplit("/", 1)[-1]]
        assert row["image_path"] in row["detail"]
    dataset = json.loads((small_build / "dataset.json").read_text())
    for split in ("train", "val"):
        samples = pl.read_parquet(small_build / split / "samples.parquet")
        shards = pl.read_parquet(small_build / split / "shards.parquet")
        ids = samples["sample_id"].to_list() + failed.filter(pl.col("split") == split)["sample_id"].to_list()
        assert sorted(ids) == sorted(manifest.filter(pl.col("split") == split)["sample_id"])
        assert shards["samples"].sum() == samples.height == dataset["counts"][split]["written"]
        assert set(samples["shard"]) == set(shards["shard"]) == set(dataset["shards"][split])
        assert set(samples["decode_path"]) <= {"roi", "draft", "full"}
        for shard in shards.iter_rows(named=True):
            assert (small_build / split / shard["shard"]).stat().st_size == shard["bytes"]
            assert (small_build / split / shard["shard"].replace(".tar", ".idx")).is_file()
            assert sum(shard["classes"]) == shard["samples"]
    train = pl.read_parquet(small_build / "train" / "samples.parquet")
    assert set(train["decode_path"]) == {"roi", "draft", "full"}  # the fixture exercises every path
    stats = dataset["pixel_stats"]
    assert stats["pixels"] > 0 and all(40 < m < 200 for m in stats["mean"]) and all(30 < s < 100 for s in stats["std"])
    assert dataset["labels"] == ["happy", "sad", "angry"] and dataset["class_weights"]["computed_on"] == "train"
    report = verify(small_build, quiet=True)
    assert report.errors == [] and report.decoded == report.samples == sum(
        c["written"] for c in dataset["counts"].values()
    )


def test_tables_and_dataset_json_follow_their_contracts(small_build: Path, tmp_path: Path):
    tables = [(small_build / FAILED_FILE, FAILED)]
    tables += [
        (small_build / split / name, schema)
        for split in ("train", "val")
        for name, schema in ((SHARDS_FILE, SHARDS), (SAMPLES_FILE, SAMPLES))
    ]
    for path, schema in tables:
        assert list(pl.read_parquet_schema(path).items()) == list(polars_schema(schema).items()), path
    dataset = small_build / DATASET_FILE
    assert (
        DatasetFile.read(dataset).write(tmp_path).read_bytes() == dataset.read_bytes()
    )  # every field is in the contract
    assert list(DatasetFile.read(dataset).counts) == list(DatasetFile.read(dataset).shards) == ["train", "val"]
    assert not (small_build / "test").exists()  # a dataset without test rows gets no test split


def test_a_test_split_is_built_like_the_others_and_listed_in_dataset_json(tmp_path: Path):
    clean = make_dataset(tmp_path / "data", test=True)
    manifest = pl.read_parquet(clean / "manifest.parquet")
    out = tmp_path / "shards"
    build(_config(clean, out))
    dataset = DatasetFile.read(out / DATASET_FILE)
    assert list(dataset.counts) == list(dataset.shards) == ["train", "val", "test"]
    got = {split: (c.manifest, c.written, c.failed, c.shards) for split, c in dataset.counts.items()}
    assert got == {"train": (14, 12, 2, 3), "val": (3, 2, 1, 1), "test": (4, 4, 0, 1)}
    failed = pl.read_parquet(out / FAILED_FILE)
    for split in ("train", "val", "test"):
        samples = pl.read_parquet(out / split / SAMPLES_FILE)
        ids = samples["sample_id"].to_list() + failed.filter(pl.col("split") == split)["sample_id"].to_list()
        assert sorted(ids) == sorted(manifest.filter(pl.col("split") == split)["sample_id"])
        assert (
            set(samples["shard"])
            == set(dataset.shards[split])
            == set(pl.read_parquet(out / split / SHARDS_FILE)["shard"])
        )
    test = pl.read_parquet(out / "test" / SAMPLES_FILE).join(manifest, on="sample_id")
    assert sorted(set(test["image_path"])) == ["odd/rot6.jpg", "photos/000/p3.jpg"]
    assert sum(dataset.counts["test"].per_class) == 4 and dataset.pixel_stats.computed_on == "train"
    report = verify(out, quiet=True)
    assert report.errors == [] and report.samples == report.decoded == 18


def test_shuffle_mixes_shards(small_build: Path, small_dataset: Path):
    samples = pl.read_parquet(small_build / "train" / "samples.parquet")
    manifest = pl.read_parquet(small_dataset / "manifest.parquet").filter(pl.col("split") == "train")
    order = manifest.sort("sample_id")["sample_id"].to_list()
    assert samples["sample_id"].to_list() != [s for s in order if s in set(samples["sample_id"])]


def test_same_bytes_whatever_the_worker_count(small_dataset: Path, small_build: Path, tmp_path: Path):
    out = tmp_path / "w2"
    summary = build(_config(small_dataset, out, workers=2))
    assert summary.built == summary.planned and summary.finalized is not None
    assert tree_bytes(out) == tree_bytes(small_build)


def test_max_bytes_parts_are_deterministic(small_dataset: Path, tmp_path: Path):
    one = build(_config(small_dataset, tmp_path / "a", max_bytes=12000, workers=1))
    two = build(_config(small_dataset, tmp_path / "b", max_bytes=12000, workers=2))
    assert one.samples == two.samples
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    names = pl.read_parquet(tmp_path / "a" / "train" / "shards.parquet")["shard"].to_list()
    assert any("_" in n for n in names)  # some planned shards were split into parts
    assert verify(tmp_path / "a", quiet=True).errors == []


def test_partitions_then_finalize_equal_a_single_run(small_dataset: Path, small_build: Path, tmp_path: Path):
    out = tmp_path / "parts"
    built = []
    for i in (2, 0):
        s = build(_config(small_dataset, out, num_partitions=3, partition=i))
        assert s.finalized is None
        built.append(s.built)
    with pytest.raises(ValueError, match=r"not finished, e.g. train/shard-000001 \(partition 1\)"):
        build(_config(small_dataset, out, num_partitions=3, finalize=True))
    built.append(build(_config(small_dataset, out, num_partitions=3, partition=1, workers=2)).built)
    assert sum(built) == 5  # 4 train + 1 val planned shards, each built once
    build(_config(small_dataset, out, finalize=True))
    assert tree_bytes(out) == tree_bytes(small_build)


def test_rerun_skips_finished_shards_and_refuses_other_options(small_dataset: Path, small_build: Path, tmp_path: Path):
    out = tmp_path / "again"
    shutil.copytree(small_build, out)
    again = build(_config(small_dataset, out))
    assert (again.built, again.skipped) == (0, again.planned)
    retried = build(_config(small_dataset, out, retry_failed=True))
    assert retried.built == 3 and retried.failed == 3  # the planned shards holding the 3 bad samples
    assert tree_bytes(out) == tree_bytes(small_build)
    with pytest.raises(ValueError, match="holds a build with other options"):
        build(_config(small_dataset, out, quality=80))


def test_too_many_failures_abort(small_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(build_mod, "MIN_SAMPLES_FOR_ABORT", 5)
    with pytest.raises(BuildAborted, match=r"above max_failed_fraction 5%.*image\."):
        build(_config(small_dataset, tmp_path / "x", max_failed_fraction=0.05))
    assert not (tmp_path / "x" / "dataset.json").exists()


def test_a_path_outside_the_root_fails_with_the_rule_id_ingest_uses(small_dataset: Path, tmp_path: Path):
    """A manifest row whose image lies outside the root is failed as ``path.outside_root`` (the registered
    rule id ingest quarantines such paths with), never opened."""
    clean = tmp_path / "clean"
    shutil.copytree(small_dataset, clean)
    manifest = pl.read_parquet(clean / "manifest.parquet")
    escaping = manifest.filter(pl.col("split") == "train")["sample_id"][0]
    manifest.with_columns(
        image_path=pl.when(pl.col("sample_id") == escaping)
        .then(pl.lit("../outside.jpg"))
        .otherwise(pl.col("image_path"))
    ).write_parquet(clean / "manifest.parquet")
    build(_config(clean, tmp_path / "out"))
    failed = pl.read_parquet(tmp_path / "out" / "failed.parquet").filter(pl.col("sample_id") == escaping)
    assert failed.select("reason", "image_path").rows() == [("path.outside_root", "../outside.jpg")]
    assert failed["detail"][0].startswith("../outside.jpg: expected a path under the root ")
