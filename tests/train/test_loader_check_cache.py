"""A split's shards are checked at the first open and not again while their files and tables are
unchanged (``train.data.check_cache``): in the same process and in the next ones. A changed file
is checked again with the same one-line error, and a failed check is never remembered."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from _loader_fixtures import IMAGE, build_shards, copy_split

from pawpipe.train.data.check_cache import CACHE_ENV, FOLDER, settled
from pawpipe.train.data.loader import LoaderSpec, ShardSet, open_loader

SHARD = "shard-000000"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loader_shards(demo_clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shards(demo_clean, tmp_path_factory)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test's own."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / FOLDER


def _split(loader_shards: Path, dest: Path) -> Path:
    """A fresh copy of the train split (3 shards), old enough to be remembered once it passes."""
    split = copy_split(loader_shards, "train", dest)
    time.sleep(0.05)  # a file changed within a timestamp tick of its check is not remembered (check_cache)
    return split


def _checked_in_new_process(split: Path) -> int:
    """``ShardSet.open(split).checked`` in a new Python process, with this one's cache folder."""
    code = f"from pawpipe.train.data.shardset import ShardSet; print(ShardSet.open({str(split)!r}).checked)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def _open_error(split: Path) -> str:
    with pytest.raises(ValueError) as info:
        ShardSet.open(split)
    return str(info.value)


def test_a_second_open_checks_nothing(loader_shards: Path, tmp_path: Path, cache: Path) -> None:
    split = _split(loader_shards, tmp_path)
    assert ShardSet.open(split).checked == 3
    assert ShardSet.open(split).checked == 0
    for backend, workers in (("dali", 1), ("torch", 0)):
        loader = open_loader(
            split,
            LoaderSpec(train=False, batch_size=4, backend=backend, image_size=IMAGE, workers=workers),
            device="cpu",
            seed=7,
        )
        assert (loader.shards.checked, loader.shards.total) == (0, 22)
    assert _checked_in_new_process(split) == 0  # remembered on disk, for the next processes
    assert [p.suffix for p in cache.iterdir()] == [".json"]
    assert oct(cache.stat().st_mode & 0o777) == "0o700"


def test_a_new_cache_folder_checks_again(
    loader_shards: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split = _split(loader_shards, tmp_path)
    assert ShardSet.open(split).checked == 3
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "other"))
    assert ShardSet.open(split).checked == 3
    assert ShardSet.open(split).checked == 0


def _truncate(index: Path) -> None:
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:-1]) + "\n")  # the last sample's line gone, the header still counting it


def _bad_entry(index: Path) -> None:
    lines = index.read_text().splitlines()
    second, third = lines[2].split(), lines[3].split()
    j = second.index("jpg")
    second[j + 1], second[j + 2] = third[j + 1], third[j + 2]  # the second sample's image now points at the third's
    lines[2] = " ".join(second)
    index.write_text("\n".join(lines) + "\n")


def _same_size_and_mtime(index: Path) -> None:
    """Rename the first sample's .json member in the index: same size, and the old mtime put back."""
    before = index.stat()
    lines = index.read_text().splitlines()
    fields = lines[1].split()
    name = fields[-1]
    fields[-1] = ("x" if name[0] != "x" else "y") + name[1:]
    lines[1] = " ".join(fields)
    index.write_text("\n".join(lines) + "\n")
    os.utime(index, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = index.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


WRONG = rf"{SHARD}.idx: wrong index for {SHARD}.tar: "
EDITS = {  # an edit of the index, and the error it gets
    "truncated": (_truncate, WRONG + r"header 'v1.2 \d+' and \d+ sample lines, expected 'v1.2 \d+'"),
    "bad entry": (_bad_entry, WRONG + r"member \S+.jpg at offset \d+ \(\+\d+ bytes\): expected offset"),
    "same size and mtime": (
        _same_size_and_mtime,
        WRONG + r"member \S+.json: expected \S+.json, the sample's other members' key",
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_index_changed_after_it_passed_is_checked_again(
    loader_shards: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    split = _split(loader_shards, tmp_path)
    assert ShardSet.open(split).checked == 3
    change, message = EDITS[edit]
    change(split / f"{SHARD}.idx")
    time.sleep(0.05)  # settled: were the failure recorded as a pass, the next open would trust it
    first = _open_error(split)
    assert "\n" not in first and re.match(f"{re.escape(str(split))}/{message}", first)
    assert _open_error(split) == first  # the failure was not remembered as a pass
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "never-used"))
    assert _open_error(split) == first  # the same error as with no cache at all


def test_a_failed_check_is_not_remembered(loader_shards: Path, tmp_path: Path, cache: Path) -> None:
    split = _split(loader_shards, tmp_path)
    index = split / "shard-000001.idx"
    good = index.read_bytes()
    _bad_entry(index)
    time.sleep(0.05)
    first = _open_error(split)  # shard-000000 passes, shard-000001 fails, shard-000002 is not reached
    assert "shard-000001.idx: wrong index" in first
    assert _open_error(split) == first
    index.write_bytes(good)
    time.sleep(0.05)
    assert ShardSet.open(split).checked == 2  # shard-000000's pass was kept; shard-000001's failure was not
    assert ShardSet.open(split).checked == 0


def test_a_changed_samples_table_checks_every_shard_again(loader_shards: Path, tmp_path: Path, cache: Path) -> None:
    split = _split(loader_shards, tmp_path)
    assert ShardSet.open(split).checked == 3
    frame = pl.read_parquet(split / "samples.parquet")
    old_key = frame.filter(pl.col("shard") == f"{SHARD}.tar")["key"][0]
    frame.with_columns(
        key=pl.when(pl.col("key") == old_key).then(pl.lit("renamed")).otherwise(pl.col("key"))
    ).write_parquet(split / "samples.parquet")
    assert _open_error(split).endswith(
        f"{SHARD}.idx: wrong index for {SHARD}.tar: sample keys differ from samples.parquet: {old_key!r} not listed; "
        "rebuild the shard with `shards build`"
    )


def test_a_cache_folder_others_can_write_is_not_used(
    loader_shards: Path, tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    split = _split(loader_shards, tmp_path)
    cache.mkdir(parents=True)
    cache.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="pawpipe.train.data.check_cache"):
        assert ShardSet.open(split).checked == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"{cache}: owned by uid {os.getuid()} with mode drwxrwxrwx; expected this user's, writable by no one else; "
        "shard checks are remembered in this process only"
    ]
    assert list(cache.iterdir()) == []
    assert ShardSet.open(split).checked == 0  # remembered in this process
    assert _checked_in_new_process(split) == 3


def test_a_stamp_is_settled_a_tick_after_the_last_change() -> None:
    now = 1_700_000_000_123_456_789
    fresh, old = [1, 2, 3, now - 5_000_000, now - 5_000_000], [1, 2, 3, now - 10**9, now - 10**9]
    assert (settled([old, old], now), settled([old, fresh], now)) == (True, False)
    whole = [1, 2, 3, 1_700_000_000 * 10**9, 1_700_000_000 * 10**9]  # a filesystem that keeps whole seconds
    assert (settled([whole], 1_700_000_001 * 10**9), settled([whole], 1_700_000_002 * 10**9 + 1)) == (False, True)
