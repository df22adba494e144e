"""``shards build`` holds a lock per partition on ``--out`` and takes only a finished ``ingest clean`` set."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _fixtures_shards import SMALL

from pawpipe.common.atomic import OUTPUTS_FILE
from pawpipe.common.lock import FolderLocked
from pawpipe.shards.build import build, partition_lock
from pawpipe.shards.config import ShardConfig

# Holds the partition's lock the way a running build does, until killed.
HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from pawpipe.shards.build import partition_lock
    from pawpipe.shards.config import ShardConfig
    lock = partition_lock(ShardConfig(manifest_dir=Path(sys.argv[1]), out=Path(sys.argv[2]), \
num_partitions=2, partition=1)).acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def _config(clean: Path, out: Path, **kw) -> ShardConfig:
    return ShardConfig(manifest_dir=clean, out=out, **{**SMALL, "quiet": True, **kw})


def test_a_second_build_of_a_partition_is_refused_and_a_dead_ones_lock_taken_over(small_dataset: Path, tmp_path: Path):
    out = tmp_path / "shards"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(small_dataset), str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline() == "held\n"
        with pytest.raises(FolderLocked, match=rf"{out}: already being built \(partition 1\) by pid {proc.pid}"):
            build(_config(small_dataset, out, num_partitions=2, partition=1))
        build(_config(small_dataset, out, num_partitions=2, partition=0))  # the other partition is free
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lock = partition_lock(_config(small_dataset, out, num_partitions=2, partition=1))
    assert json.loads(lock.path.read_text())["pid"] == proc.pid  # the stale lock the killed holder left
    summary = build(_config(small_dataset, out, num_partitions=2, partition=1))
    assert summary.planned == summary.built + summary.skipped


def test_a_mixed_or_aborted_clean_folder_is_refused(small_dataset: Path, tmp_path: Path):
    clean = tmp_path / "clean"
    shutil.copytree(small_dataset, clean)
    files = {p.name: p.stat().st_size for p in clean.iterdir()}
    (clean / OUTPUTS_FILE).write_text(json.dumps({"tool": "ingest clean", "files": files}))
    (clean / "labels.json").write_text((clean / "labels.json").read_text() + "\n")  # from another run
    with pytest.raises(ValueError, match=r"labels.json differ from the set `ingest clean` wrote"):
        build(_config(clean, tmp_path / "shards"))
    del files["manifest.parquet"], files["labels.json"]
    (clean / OUTPUTS_FILE).write_text(json.dumps({"tool": "ingest clean", "files": files}))
    with pytest.raises(ValueError, match=r"the last `ingest clean` into it wrote no manifest.parquet, labels.json"):
        build(_config(clean, tmp_path / "shards"))
    assert not (tmp_path / "shards").exists()


def test_wrong_folders_say_what_they_are(small_dataset: Path, small_build: Path, tmp_path: Path):
    with pytest.raises(
        ValueError, match=rf"{small_build}: this is a `shards build` output, not an `ingest clean` output"
    ):
        build(_config(small_build, tmp_path / "shards"))
    with pytest.raises(
        ValueError, match=rf"{small_dataset}: this is an `ingest clean` output, not a `shards build` output"
    ):
        build(_config(small_dataset, small_dataset))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file: expected an output folder, got a file"):
        build(_config(small_dataset, tmp_path / "file"))
