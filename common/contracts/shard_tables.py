"""The Parquet tables of a ``shards build``: written by its finalize, read by ``shards verify``, the
loaders (``train.data.shardset``) and the label audit.

    SHARDS/<split>/shards.parquet    one row per tar
    SHARDS/<split>/samples.parquet   one row per sample, in tar order; then a data-diet build's
                                     left-out training rows (no key, shard or decode path)
    SHARDS/failed.parquet            the manifest rows no tar holds, with why

Every clean manifest row is in exactly one tar, or in failed.parquet, or (training rows of a
data-diet build) in samples.parquet with reason ``not_selected``. ``common.contracts.ingest_tables.polars_schema``
gives the polars dtypes; ``check_columns`` holds a table to them on its way out and in.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from pawpipe.common.contracts.ingest_tables import polars_schema

SHARDS_FILE = "shards.parquet"
SAMPLES_FILE = "samples.parquet"
FAILED_FILE = "failed.parquet"

SHARDS = pa.schema(
    [
        ("shard", pa.string()),  # tar file name in the split folder, e.g. shard-000007_1.tar
        ("planned", pa.string()),  # the planned shard it is part of, e.g. shard-000007
        ("samples", pa.int64()),
        ("bytes", pa.int64()),  # size of the tar
        ("sha256", pa.string()),  # of the tar
        ("classes", pa.list_(pa.int64())),  # samples per label id
    ]
)

SAMPLES = pa.schema(
    [
        ("sample_id", pa.string()),
        ("key", pa.string()),  # the members' name stem in the tar (common.contracts.tar_layout)
        ("shard", pa.string()),  # tar file name
        ("label_id", pa.int64()),
        ("decode_path", pa.string()),  # roi | draft | full (shards.crop)
        ("reason", pa.string()),  # null for a sample in a tar; NOT_SELECTED for a left-out training row
    ]
)

FAILED = pa.schema(
    [
        ("split", pa.string()),
        ("sample_id", pa.string()),
        ("image_path", pa.string()),
        ("planned_shard", pa.string()),
        ("reason", pa.string()),  # a failure id: image.missing, image.undecodable, crop.empty...
        ("detail", pa.string()),  # one line: what, where, expected, got
    ]
)

NOT_SELECTED = "not_selected"  # samples.parquet reason of a training row a data-diet build left out


def check_columns(path: Path, frame: pl.DataFrame, schema: pa.Schema) -> pl.DataFrame:
    """``frame``, the table at ``path``, when its columns are ``schema``'s (names, order, dtypes); else one line
    saying how not."""
    expected = polars_schema(schema)
    if list(frame.schema.items()) != list(expected.items()):
        raise ValueError(f"{path}: columns {dict(frame.schema)}, expected {expected} (common.contracts.shard_tables)")
    return frame
