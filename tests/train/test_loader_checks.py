"""The loaders check a shard's index against its tar and ``samples.parquet`` at open: every entry,
not only the first and last, and member names that are sample keys (no ``../x``, no ``/etc/x``)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import polars as pl
import pytest
from _loader_fixtures import IMAGE, build_shards, copy_split

from pawpipe.shards.writer import ShardWriter
from pawpipe.train.data.loader import LoaderSpec, ShardSet, open_loader

SHARD = "shard-000000"


@pytest.fixture(scope="module")
def loader_shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shards(demo_clean, tmp_path_factory)


def _open_both(split: Path) -> None:
    ShardSet.open(split)
    for backend, workers in (("dali", 1), ("torch", 0)):
        open_loader(
            split,
            LoaderSpec(train=False, batch_size=4, backend=backend, image_size=IMAGE, workers=workers),
            device="cpu",
            seed=7,
        )


def test_an_edited_middle_entry_is_refused(loader_shards: Path, tmp_path: Path) -> None:
    split = copy_split(loader_shards, "train", tmp_path)
    index = split / f"{SHARD}.idx"
    lines = index.read_text().splitlines()
    assert len(lines) >= 5
    second, third = lines[2].split(), lines[3].split()
    j = second.index("jpg")
    second[j + 1], second[j + 2] = third[j + 1], third[j + 2]  # the second sample's image now points at the third's
    lines[2] = " ".join(second)
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ValueError,
        match=rf"{SHARD}.idx: wrong index for {SHARD}.tar: member {second[j + 3]} at offset \d+ "
        rf"\(\+\d+ bytes\): expected offset \d+, where the member before it ends",
    ):
        ShardSet.open(split)
    for backend, workers in (("dali", 1), ("torch", 0)):
        with pytest.raises(ValueError, match="wrong index"):
            open_loader(
                split,
                LoaderSpec(train=False, batch_size=4, backend=backend, image_size=IMAGE, workers=workers),
                device="cpu",
                seed=7,
            )


def _rename_first_sample(split: Path, new_key: str, *, in_table: bool) -> None:
    """Rewrite the shard (tar, index, size in shards.parquet) with its first sample under ``new_key``."""
    tar_path = split / f"{SHARD}.tar"
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tar:
        for info in tar:
            key, ext = info.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(info).read()
    old_key = next(iter(samples))
    writer = ShardWriter(tmp := split.parent / "rewrite", SHARD, max_bytes=1 << 40)
    for key, members in samples.items():
        writer.add(new_key if key == old_key else key, members)
    [part] = writer.close()
    (tmp / f"{SHARD}.tar").replace(tar_path)
    (tmp / f"{SHARD}.idx").replace(split / f"{SHARD}.idx")
    table = pl.read_parquet(split / "shards.parquet")
    table.with_columns(
        bytes=pl.when(pl.col("shard") == f"{SHARD}.tar").then(part.bytes).otherwise(pl.col("bytes"))
    ).write_parquet(split / "shards.parquet")
    if in_table:
        frame = pl.read_parquet(split / "samples.parquet")
        frame.with_columns(
            key=pl.when(pl.col("key") == old_key).then(pl.lit(new_key)).otherwise(pl.col("key"))
        ).write_parquet(split / "samples.parquet")


@pytest.mark.parametrize("key", ["../evil", "/etc/evil"])
@pytest.mark.parametrize("in_table", [False, True])
def test_member_names_that_leave_the_shard_are_refused(
    loader_shards: Path, tmp_path: Path, key: str, in_table: bool
) -> None:
    split = copy_split(loader_shards, "train", tmp_path)
    _rename_first_sample(split, key, in_table=in_table)
    with pytest.raises(
        ValueError, match=rf"{SHARD}.idx: .*member {key}.cls: expected a sample key \(letters, digits, '_', '-', '.'\)"
    ):
        ShardSet.open(split)


def test_a_key_not_in_samples_parquet_is_refused(loader_shards: Path, tmp_path: Path) -> None:
    split = copy_split(loader_shards, "train", tmp_path)
    _rename_first_sample(split, "stranger", in_table=False)
    with pytest.raises(
        ValueError, match=rf"{SHARD}.idx: .*sample keys differ from samples.parquet: 'stranger' not listed"
    ):
        ShardSet.open(split)
    _open_both(copy_split(loader_shards, "val", tmp_path / "ok"))  # an untouched split opens in both loaders


def test_a_member_the_index_does_not_list_is_refused(loader_shards: Path, tmp_path: Path) -> None:
    split = copy_split(loader_shards, "train", tmp_path)
    tar_path = split / f"{SHARD}.tar"
    with tarfile.open(tar_path) as tar:
        samples: dict[str, dict[str, bytes]] = {}
        for info in tar:
            key, ext = info.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(info).read()
    first = next(iter(samples))
    writer = ShardWriter(tmp := tmp_path / "rewrite", SHARD, max_bytes=1 << 40)
    writer.add("extra", samples[first])  # an unindexed sample ahead of the others
    for key, members in samples.items():
        writer.add(key, members)
    [part] = writer.close()
    lines = (tmp / f"{SHARD}.idx").read_text().splitlines()
    (split / f"{SHARD}.idx").write_text("\n".join([f"v1.2 {len(lines) - 2}", *lines[2:]]) + "\n")
    (tmp / f"{SHARD}.tar").replace(tar_path)
    table = pl.read_parquet(split / "shards.parquet")
    table.with_columns(
        bytes=pl.when(pl.col("shard") == f"{SHARD}.tar").then(part.bytes).otherwise(pl.col("bytes"))
    ).write_parquet(split / "shards.parquet")
    with pytest.raises(
        ValueError,
        match=rf"wrong index for {SHARD}.tar: member {first}.cls at offset \d+ \(\+1 bytes\): expected offset 512",
    ):
        ShardSet.open(split)  # the unindexed member leaves a gap before the first indexed one
