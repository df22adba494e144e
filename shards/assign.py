"""Which sample goes to which shard: a seeded global permutation cut into fixed-size shards.

Each split's rows are sorted by ``sample_id`` (so the manifest's row order does not matter),
permuted with ``numpy.random.default_rng([seed, split_index])`` and cut into planned shards
of ``max_samples`` consecutive rows. The plan depends only on the manifest, ``max_samples``
and ``seed``: never on the worker count or the partitioning, so any worker builds any
planned shard to the same bytes. ``max_bytes`` is applied later, inside a planned shard, as
a cap that closes a tar and opens the next part (``shards.writer``), which is just as
deterministic. Partition ``I`` of ``K`` owns the planned shards whose ordinal (position over
all splits) is ``I`` modulo ``K``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pawpipe.common.contracts.ingest_tables import BBOX_COLUMNS, MANIFEST, SPLITS, columns

# The manifest columns a shard depends on: identity, label, box, the image facts the crop plan
# uses and the hash the file is checked against (not provenance, repairs or warnings).
PLAN_COLUMNS = columns(
    MANIFEST,
    "sample_id",
    "image_path",
    "group_id",
    "split",
    "label",
    "label_id",
    *BBOX_COLUMNS,
    "width",
    "height",
    "image_format",
    "image_mode",
    "orientation",
    "content_hash",
)
ROW_COLUMNS = (
    "key",
    *(name for name in PLAN_COLUMNS if name != "split"),
)  # a shard task's rows (its split is the task's)
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class PlannedShard:
    split: str
    index: int  # position within the split; names the tar(s)
    ordinal: int  # position over all splits; decides the partition
    start: int  # rows [start, stop) of the split's permuted frame
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"

    def partition(self, num_partitions: int) -> int:
        return self.ordinal % num_partitions


def read_manifest(manifest_dir: str | Path) -> pl.DataFrame:
    """The columns sharding needs from ``manifest.parquet``, checked for what the plan relies on."""
    path = Path(manifest_dir) / "manifest.parquet"
    try:
        frame = pl.read_parquet(path, columns=list(PLAN_COLUMNS))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"{path}: cannot read the clean manifest: {' '.join(str(exc).split())[:300]}") from None
    problems = []
    bad_split = frame.filter(~pl.col("split").is_in(list(SPLITS)) | pl.col("split").is_null())
    if bad_split.height:
        problems.append(f"split: expected one of {SPLITS}, got {bad_split.get_column('split').unique().to_list()[:5]}")
    dup = frame.filter(pl.col("sample_id").is_duplicated() | pl.col("sample_id").is_null())
    if dup.height:
        problems.append(
            f"sample_id: expected unique non-null ids, got repeats like {dup.get_column('sample_id').head(3).to_list()}"
        )
    bad_label = frame.filter(pl.col("label_id").is_null() | (pl.col("label_id") < 0))
    if bad_label.height:
        problems.append(
            f"label_id: expected ids >= 0, got {bad_label.get_column('label_id').head(3).to_list()} "
            f"for {bad_label.get_column('sample_id').head(3).to_list()}"
        )
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return frame


def manifest_sha256(manifest_dir: str | Path) -> str:
    """Checksum of manifest.parquet: a build resumes only against the manifest it started from."""
    digest = hashlib.sha256()
    with open(Path(manifest_dir) / "manifest.parquet", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sample_key(sample_id: str) -> str:
    """A tar member stem for ``sample_id``: the id itself when it is short and [A-Za-z0-9_-],
    else its safe characters plus a hash (no dots: WebDataset splits a member name at the first one).

    >>> sample_key("a1b2c3"), sample_key("행복/x.jpg#3")[:6]
    ('a1b2c3', 'x_jpg_')
    """
    if _SAFE_KEY.fullmatch(sample_id):
        return sample_id
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", sample_id).strip("_")[:40]
    return f"{safe}_{hashlib.sha256(sample_id.encode()).hexdigest()[:16]}".lstrip("_")


def shuffled_splits(manifest: pl.DataFrame, *, seed: int) -> dict[str, pl.DataFrame]:
    """Each split's rows in their seeded global order, with a ``key`` column."""
    out = {}
    for index, split in enumerate(SPLITS):
        part = manifest.filter(pl.col("split") == split).sort("sample_id")
        order = np.random.default_rng([seed, index]).permutation(part.height)
        part = part[order]
        safe = pl.col("sample_id").str.contains(f"^{_SAFE_KEY.pattern}$")
        part = part.with_columns(key=pl.when(safe).then(pl.col("sample_id")))
        if part.get_column("key").null_count():  # rare: ids with other characters get a hashed key
            keys = [k if k is not None else sample_key(s) for s, k in part.select("sample_id", "key").iter_rows()]
            part = part.with_columns(key=pl.Series("key", keys, dtype=pl.String))
        if part.get_column("key").n_unique() != part.height:
            dup = part.filter(pl.col("key").is_duplicated()).get_column("sample_id").head(3).to_list()
            raise ValueError(f"split {split}: sample ids {dup} map to the same tar key")
        out[split] = part
    return out


def plan_shards(splits: dict[str, pl.DataFrame], *, max_samples: int) -> list[PlannedShard]:
    """Planned shards of every split, in split order; boundaries depend on counts only."""
    planned, ordinal = [], 0
    for split in SPLITS:
        n = splits[split].height
        for index, start in enumerate(range(0, n, max_samples)):
            planned.append(PlannedShard(split, index, ordinal, start, min(n, start + max_samples)))
            ordinal += 1
    return planned
