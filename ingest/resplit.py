"""``write_resplit``: a clean folder whose rows have new splits, written as one set, as ``ingest clean``
writes its own (``outputs.json`` last): the rows the caller gives, their labels counted again over the
source's vocabulary, the source's cleaning config copied. ``train crossval`` makes each fold's folder
with it (the held-out fold is ``val``, the other folds ``train``); ``shards build`` reads it as any
clean folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from pawpipe.common.atomic import staged_folder, write_json, write_parquet
from pawpipe.common.contracts.labels_file import build_labels
from pawpipe.ingest.clean import TOOL


def write_resplit(source: str | Path, out: str | Path, manifest: pl.DataFrame) -> Path:
    """Write ``out``: ``manifest`` (rows of ``source``'s manifest, each with the split it now belongs to)
    with ``source``'s vocabulary, label field and cleaning config; returns ``out``."""
    source, out = Path(source), Path(out)
    labels = json.loads((source / "labels.json").read_text(encoding="utf-8"))
    with staged_folder(out, tool=TOOL) as stage:
        write_json(
            stage / "labels.json",
            build_labels(manifest, tuple(labels["vocabulary"]), label_field=labels["label_field"]),
        )
        shutil.copy(source / "clean_config.json", stage / "clean_config.json")
        write_parquet(stage / "manifest.parquet", manifest)
    return out
