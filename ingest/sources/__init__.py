"""Annotation sources: one module per input format, all emitting the same ``RECORDS`` frame.

A source module provides:

* ``NAME``: the ``--format`` value;
* ``detect(root) -> bool``: whether ``root`` looks like this format (for ``--format auto``);
* ``parse(root, options) -> Parsed``.

A source never opens images (the probe does) and never raises on a bad annotation file:
a file that does not parse becomes one record with ``parse_error`` set, and the other
files go on.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict


FORMATS = ("aihub", "coco", "voc", "yolo", "table")


class SourceOptions(BaseModel):
    """What a source needs to know beyond the root; each source reads the fields it uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = "inspect.emotion"  # aihub: inspect.emotion | owner.emotion | action | species
    annotations: str | None = None  # coco/table: the annotation file, relative to root; found when None
    workers: int | None = None  # parallel parsing where a source supports it
    quiet: bool = False  # no progress bars
    max_file_bytes: int | None = None  # a larger label file is refused unopened (rule annotation.too_large)


@dataclass
class Parsed:
    records: pl.DataFrame  # RECORDS columns (+ parse_error), then `extra_columns`
    extra_columns: list[str] = field(default_factory=list)
    vocabulary: tuple[str, ...] | None = None  # the source's own class list, in id order, if it has one
    orphans: pl.DataFrame | None = None  # ORPHANS: images on disk that no annotation names
    notes: dict = field(default_factory=dict)  # source-specific statistics for the report



def source_module(name: str):
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; valid: auto, {', '.join(FORMATS)}")
    return importlib.import_module(f"ingest.sources.{name}")


def detect_format(root: Path) -> str:
    """The first format whose ``detect`` accepts ``root``; raises naming what was looked for."""
    for name in FORMATS:
        if source_module(name).detect(root):
            return name
    raise ValueError(
        f"{root}: cannot tell the annotation format (looked for AI Hub 라벨링데이터 folders, a COCO "
        "instances JSON, VOC XML, YOLO txt + class names, a CSV/Parquet table); pass --format"
    )


def parse(root: Path, fmt: str, options: SourceOptions) -> tuple[str, Parsed]:
    """Parse ``root`` in format ``fmt`` (``auto`` detects it); returns the format used and the records."""
    name = detect_format(root) if fmt == "auto" else fmt
    return name, source_module(name).parse(root, options)
