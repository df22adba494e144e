"""Annotation sources: one module per input format, all emitting the same ``RECORDS`` frame.

``FORMATS`` is the registry: the one list of formats, in the order ``--format auto`` tries
them; the config's and the command line's choices are derived from it. A source module provides:

* ``NAME``: the ``--format`` value;
* ``LOOKS_FOR``: what ``detect`` looks for, in words (said when no format is detected);
* ``detect(root) -> bool``: whether ``root`` looks like this format (for ``--format auto``);
* ``parse(root, options) -> Parsed``;
* optionally ``post_probe(frame) -> frame``: what the records need once the probe has decoded the
  images (YOLO turns its normalised boxes into pixels); ``ingest clean`` calls it through
  ``get_source(name).post_probe`` for every format without naming any, and it is the identity
  for a module that does not define one.

A source never opens images (the probe does) and never raises on a bad annotation file:
a file that does not parse becomes one record with ``parse_error`` set, and the other
files go on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # polars for annotations only: the command line imports FORMATS from here and stays light
    import polars as pl

FORMATS = ("aihub", "coco", "voc", "yolo", "table")
AUTO = "auto"  # detect the format: the first of FORMATS whose ``detect`` accepts the root
FORMAT_CHOICES = (AUTO, *FORMATS)  # what --format and CleanConfig.format accept


class SourceOptions(BaseModel):
    """What a source needs to know beyond the root; each source reads the fields it uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = "inspect.emotion"  # aihub: inspect.emotion | owner.emotion | action | species
    annotations: str | None = None  # coco/table: the annotation file, relative to root; found when None
    workers: int | None = None  # parallel parsing where a source supports it
    quiet: bool = False  # no progress bars
    max_file_bytes: int | None = None  # a larger label file is refused unopened (rule annotation.too_large)
    allow_roots: tuple[str, ...] = ()  # real folders outside the root that symlinks under it may lead into


@dataclass
class Parsed:
    records: pl.DataFrame  # RECORDS columns (+ parse_error), then `extra_columns`
    extra_columns: list[str] = field(default_factory=list)
    vocabulary: tuple[str, ...] | None = None  # the source's own class list, in id order, if it has one
    orphans: pl.DataFrame | None = None  # ORPHANS: images on disk that no annotation names
    notes: dict = field(default_factory=dict)  # source-specific statistics for the report


@dataclass(frozen=True)
class Source:
    """A registered format, as ``ingest clean`` uses it."""

    name: str
    looks_for: str
    detect: Callable[[Path], bool]
    parse: Callable[[Path, SourceOptions], Parsed]
    post_probe: Callable[[pl.DataFrame], pl.DataFrame]  # records joined with the probe -> records


def _unchanged(frame: pl.DataFrame) -> pl.DataFrame:
    return frame


def source_module(name: str):
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; valid: {', '.join(FORMAT_CHOICES)}")
    return importlib.import_module(f"pawpipe.ingest.sources.{name}")


@cache
def get_source(name: str) -> Source:
    """The registry entry of format ``name`` (its module is imported on first use); an unknown name raises."""
    module = source_module(name)
    return Source(name, module.LOOKS_FOR, module.detect, module.parse, getattr(module, "post_probe", _unchanged))


def detect_format(root: Path) -> str:
    """The first format whose ``detect`` accepts ``root``; raises naming what was looked for."""
    for name in FORMATS:
        if get_source(name).detect(root):
            return name
    looked_for = ", ".join(get_source(name).looks_for for name in FORMATS)
    raise ValueError(f"{root}: cannot tell the annotation format (looked for {looked_for}); pass --format")


def parse(root: Path, fmt: str, options: SourceOptions) -> tuple[str, Parsed]:
    """Parse ``root`` in format ``fmt`` (``auto`` detects it); returns the format used and the records.
    With ``auto``, ``notes["detected"]`` says how the format was chosen and which others the folder also
    looks like (three datasets under one folder: the report and the terminal name the one taken)."""
    name = detect_format(root) if fmt == AUTO else fmt
    parsed = get_source(name).parse(root, options)
    parsed.records = parsed.records.with_columns(image_path=normal_path(parsed.records.get_column("image_path")))
    if fmt == AUTO:
        parsed.notes["detected"] = {
            "format": name,
            "also_looks_like": [n for n in FORMATS if n != name and get_source(n).detect(root)],
        }
    return name, parsed


def normal_path(paths: pl.Series) -> pl.Series:
    """One spelling per image: ``images//x.jpg``, ``./images/x.jpg`` and ``images/./x.jpg`` are
    ``images/x.jpg`` (else one image counts as several samples). Lexical only: ``..`` and symlinks are
    left to the path rules, which resolve them on disk.

    >>> import polars as pl
    >>> normal_path(pl.Series(["./images//x.jpg", "../x.jpg"])).to_list()
    ['images/x.jpg', '../x.jpg']
    """
    return paths.str.replace_all("/{2,}", "/").str.replace_all(r"(^|/)(?:\./)+", "${1}")
