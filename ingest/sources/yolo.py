"""YOLO txt labels: one record per line ``class x_center y_center width height`` (normalised).

    <root>/images/<split>/x.jpg  <->  <root>/labels/<split>/x.txt     (Ultralytics)
    <root>/<split>/images/x.jpg  <->  <root>/<split>/labels/x.txt     (Roboflow export)

A label file pairs with the image of the same relative path and stem in the sibling
``images/`` folder (the folder is listed, no image is opened); a label file without one
names ``images/<...>/<stem>`` with no suffix, which ``image.missing`` then reports. An image
without a label file, or with an empty one, is a background image: an orphan.

Class names come from the first of: ``data.yaml``, ``dataset.yaml``, any other ``*.yaml`` /
``*.yml`` at the root with ``names:`` (a list or an ``{id: name}`` mapping, read with PyYAML as
Ultralytics reads it; ``names:`` written twice, an id twice or a name YAML reads as a boolean is
refused, naming the file), ``classes.txt`` or ``obj.names`` at the
root, ``labels/classes.txt`` (LabelImg). A class id missing from the names keeps its text as
the label, so ``label.unknown`` quarantines it.

Boxes: the parser cannot know the pixel size without opening the image, so ``bbox_*`` stay
null and the normalised values go to ``norm_cx, norm_cy, norm_w, norm_h`` (the report says so:
``notes["normalised_boxes"]``); ``ingest clean`` calls this source's ``post_probe`` hook,
``to_pixels``, once the probe has the decoded size. A line with other than 5 fields is ``annotation.malformed``; a
non-numeric or non-finite value is a null coordinate with ``bbox_raw`` kept (``bbox.invalid``).
Split: a folder name on the way to the label file (``train``, ``val2017``, ``valid``, ``test``), else null.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from pathlib import Path

import polars as pl
import yaml

from pawpipe.common.contracts.ingest_tables import ORPHANS, RECORDS, conform, polars_schema, split_alias
from pawpipe.ingest.pool import chunked, map_chunks, worker_count
from pawpipe.ingest.sources import Parsed, SourceOptions
from pawpipe.ingest.sources._common import ROW_SCHEMA, all_finite, cannot_read, text_float
from pawpipe.ingest.sources.files import admit, shown, walk, with_refused

NAME = "yolo"
LOOKS_FOR = "YOLO txt + class names"
EXTRA_COLUMNS = {"norm_cx": pl.Float64, "norm_cy": pl.Float64, "norm_w": pl.Float64, "norm_h": pl.Float64}
# Ultralytics' IMG_FORMATS.
IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
NAMES_TXT = ("classes.txt", "obj.names", "labels/classes.txt")
_SCHEMA = {**ROW_SCHEMA, **EXTRA_COLUMNS}
_POOL_MIN_FILES = 512  # below this a process pool costs more to start than it saves
_FIELDS = "'class x_center y_center width height'"

# One label file to parse: (label file, image path it pairs with, split).
Job = tuple[str, str, str | None]


def detect(root: Path) -> bool:
    has_labels = any(
        name.endswith(".txt") for d in _label_dirs(root) for _, _, names in os.walk(root / d) for name in names
    )
    return has_labels and class_names(root) is not None


def parse(root: Path, options: SourceOptions) -> Parsed:
    """Parse every label file under ``root`` into records (one per box line) and orphans."""
    unreadable: list[dict] = []
    jobs, unlabelled = label_jobs(root, unreadable)
    if not jobs and not unreadable:
        raise ValueError(f"{root}: expected YOLO label files (labels/**/*.txt or */labels/**/*.txt), got none")
    jobs, refused = admit(
        root, jobs, max_bytes=options.max_file_bytes, allowed=options.allow_roots, rel=lambda job: job[0]
    )
    refused += unreadable
    named = class_names(root)
    names, names_file = named if named else ({}, None)
    workers = worker_count(options.workers) if len(jobs) >= _POOL_MIN_FILES else 1
    chunks = [(str(root), names, part) for part in chunked(jobs, workers=workers)]
    frames, orphans = [], list(unlabelled)
    sizes = [len(part) for _, _, part in chunks]
    for rows, empty_files in map_chunks(
        _parse_chunk, chunks, sizes=sizes, workers=workers, desc="parse YOLO labels", unit="file", quiet=options.quiet
    ):
        frames.append(pl.DataFrame(rows, schema=_SCHEMA, orient="row"))
        orphans += empty_files
    records = with_refused(pl.concat(frames) if frames else pl.DataFrame(schema=_SCHEMA), refused)
    orphans.sort()
    return Parsed(
        records=conform(records, RECORDS, extra=list(EXTRA_COLUMNS)),
        extra_columns=list(EXTRA_COLUMNS),
        vocabulary=tuple(dict.fromkeys(names[k] for k in sorted(names))) if names else None,
        orphans=pl.DataFrame({"image_path": orphans, "group_id": orphans}, schema=polars_schema(ORPHANS)),
        notes={"normalised_boxes": True, "label_files": len(jobs) + len(refused), "names_file": names_file},
    )


def to_pixels(frame: pl.DataFrame) -> pl.DataFrame:
    """Pixel ``bbox_*`` from the normalised centre boxes and the decoded ``width``/``height`` (null where unknown).

    >>> to_pixels(pl.DataFrame({"norm_cx": [0.5], "norm_cy": [0.5], "norm_w": [0.25], "norm_h": [0.5],
    ...                         "width": [640], "height": [480]})).row(0, named=True)["bbox_x"]
    240.0
    """
    width, height = pl.col("width").cast(pl.Float64), pl.col("height").cast(pl.Float64)
    return frame.with_columns(
        bbox_x=(pl.col("norm_cx") - pl.col("norm_w") / 2) * width,
        bbox_y=(pl.col("norm_cy") - pl.col("norm_h") / 2) * height,
        bbox_w=pl.col("norm_w") * width,
        bbox_h=pl.col("norm_h") * height,
    )


post_probe = to_pixels  # the hook ``ingest clean`` calls once the probe has the sizes (see ``ingest.sources``)


def label_jobs(root: Path, unreadable: list[dict] | None = None) -> tuple[list[Job], list[str]]:
    """Every label file with its image and split (sorted), and the images that have no label file; a folder
    that cannot be listed is one failure record in ``unreadable``."""
    jobs: list[Job] = []
    unreadable = [] if unreadable is None else unreadable
    unlabelled: list[str] = []
    for labels in _label_dirs(root):
        images = posixpath.join(posixpath.dirname(labels), "images")
        # Image names Arrow can hold (undecodable bytes escaped); label files go to the gate as they are.
        on_disk = {key: shown(path) for key, path in _list_files(root, images, IMAGE_SUFFIXES, unreadable).items()}
        label_files = _list_files(root, labels, {".txt"}, unreadable)
        label_files.pop("classes", None)  # LabelImg writes the names beside the labels
        for key, rel in label_files.items():
            folders = rel.split("/")[:-1]
            split = next((s for s in map(split_alias, reversed(folders)) if s), None)
            jobs.append((rel, on_disk.get(key) or posixpath.join(images, key), split))
        unlabelled += [path for key, path in on_disk.items() if key not in label_files]
    return sorted(jobs), sorted(unlabelled)


def _label_dirs(root: Path) -> list[str]:
    """``labels/`` at the root or one level down (Roboflow's ``train/labels``), POSIX relative."""
    return sorted(
        p.relative_to(root).as_posix() for pattern in ("labels", "*/labels") for p in root.glob(pattern) if p.is_dir()
    )


def _list_files(root: Path, under: str, suffixes: set[str], unreadable: list[dict]) -> dict[str, str]:
    """Path below ``under`` without suffix -> POSIX path relative to ``root``, for files with these suffixes."""
    found: dict[str, str] = {}
    for folder, names in walk(root, under, unreadable):
        rel = posixpath.relpath(folder, under)
        for name in names:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in suffixes:
                key = stem if rel == "." else f"{rel}/{stem}"
                found.setdefault(key, posixpath.join(under, key + suffix))
    return found


def class_names(root: Path) -> tuple[dict[int, str], str] | None:
    """Class id -> name and the file it came from, or None when the dataset has no names file."""
    yamls = sorted(p.name for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    ordered = [n for n in ("data.yaml", "dataset.yaml") if n in yamls] + [
        n for n in yamls if n not in ("data.yaml", "dataset.yaml")
    ]
    for name in ordered:
        names = yaml_names(_read_text(root, name), name)
        if names:
            return names, name
    for name in NAMES_TXT:
        if (root / name).is_file():
            lines = [line.strip() for line in _read_text(root, name).splitlines()]
            while lines and not lines[-1]:
                lines.pop()
            return dict(enumerate(lines)), name
    return None


def _read_text(root: Path, name: str) -> str:
    """A names file's text; one that is not UTF-8 is a usage error (every label would be wrong)."""
    try:
        return (root / name).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: expected UTF-8 text, got {exc.reason} at byte {exc.start}") from None


def yaml_names(text: str, name: str = "data.yaml") -> dict[int, str] | None:
    """The top-level ``names:`` of a YOLO dataset YAML (a list, or an ``{id: name}`` mapping), read as
    Ultralytics reads it (PyYAML, anchors and all). What readers would take differently is refused in one
    line naming ``name``: ``names`` written twice (PyYAML keeps the last), an id twice, a name YAML reads
    as a boolean or null (``no``, ``off``, ``~``: quote it).

    >>> yaml_names("nc: 2\\nnames: ['cat', 'dog']")
    {0: 'cat', 1: 'dog'}
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if not re.search(r"^names\s*:", text, re.MULTILINE):
            return None  # some other YAML beside the data: not ours to judge
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"{name}: YAML does not parse{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(node, yaml.MappingNode) or not isinstance(doc, dict) or doc.get("names") is None:
        return None
    names_nodes = [value for key, value in node.value if isinstance(key, yaml.ScalarNode) and key.value == "names"]
    if len(names_nodes) > 1:
        lines = [str(value.start_mark.line + 1) for value in names_nodes]
        raise ValueError(
            f"{name}: expected one 'names:', got {len(names_nodes)} (lines {', '.join(lines)}); YAML readers "
            "keep the last, so which names the labels mean is ambiguous: remove all but one"
        )
    names = doc["names"]
    if isinstance(names, list):
        pairs = list(enumerate(names))
    elif isinstance(names, dict):
        keys = [key.value for key, _ in names_nodes[0].value if isinstance(key, yaml.ScalarNode)]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(
                f"{name}: expected each class id once under 'names:', got {', '.join(twice)} more than once"
            )
        pairs = list(names.items())
    else:
        raise ValueError(
            f"{name}: expected 'names:' to be a list or an {{id: name}} mapping, got {type(names).__name__}"
        )
    out: dict[int, str] = {}
    for key, value in pairs:
        if type(key) is not int or key < 0:
            raise ValueError(f"{name}: expected class ids 0, 1, ... under 'names:', got {key!r}")
        if value is None or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(
                f"{name}: names[{key}] reads as {yaml.safe_dump(value).split(chr(10))[0]!s} "
                f"({type(value).__name__}), not a class name; quote it"
            )
        out[key] = str(value)
    return out


def _parse_chunk(job: tuple[str, dict[int, str], list[Job]]) -> tuple[list[tuple], list[str]]:
    """Rows (tuples in ``_SCHEMA`` order) for a chunk of label files, and the images whose file is empty."""
    root, names, files = job
    rows: list[tuple] = []
    empty_files: list[str] = []
    for rel, image, split in files:
        try:
            with open(os.path.join(root, rel), encoding="utf-8-sig") as handle:
                lines = handle.read().splitlines()
        except UnicodeDecodeError as exc:
            rows.append(
                _row(
                    rel,
                    None,
                    image,
                    split,
                    None,
                    None,
                    f"{rel}: expected UTF-8 text, got {exc.reason} at byte {exc.start}",
                )
            )
            continue
        except OSError as exc:
            rows.append(_row(rel, None, image, split, None, None, cannot_read(rel, exc)))
            continue
        boxes = 0
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            boxes += 1
            label = _label(fields[0], names)
            if len(fields) != 5:
                error = f"{rel}: line {number}: expected 5 fields {_FIELDS}, got {len(fields)}"
                rows.append(_row(rel, str(number), image, split, label, None, error))
                continue
            values = [text_float(v) for v in fields[1:]]
            raw = None if all_finite(*values) else " ".join(fields[1:])
            rows.append(_row(rel, str(number), image, split, label, raw, None, *values))
        if not boxes:
            empty_files.append(image)
    return rows, empty_files


def _row(
    rel: str,
    record: str | None,
    image: str,
    split: str | None,
    label: str | None,
    raw: str | None,
    error: str | None,
    cx: float | None = None,
    cy: float | None = None,
    w: float | None = None,
    h: float | None = None,
) -> tuple:
    """One record in ``_SCHEMA`` order; ``bbox_*`` and the claimed size stay null (see the module doc)."""
    return (rel, record, image, image, split, label, None, None, None, None, raw, None, None, error, cx, cy, w, h)


def _label(token: str, names: dict[int, str]) -> str:
    """The class name for a class id token; the token itself when it names no class."""
    value = text_float(token)
    if value is not None and math.isfinite(value) and value.is_integer() and int(value) in names:
        return names[int(value)]
    return token
