"""Pascal VOC XML: one record per ``<object>``.

    <base>/Annotations/<id>.xml + <base>/JPEGImages/<filename> + <base>/ImageSets/Main/{train,val,test}.txt
    <root>/**/<name>.xml beside the image it names                              (LabelImg)

``<base>`` is the root or a folder up to two levels down (``VOCdevkit/VOC2012``). When no
``Annotations/`` folder exists, every XML under the root whose root element is
``<annotation>`` is read and its image is looked for beside it. ``<path>`` (an absolute path
on the annotator's machine) and ``<folder>`` (the dataset's name in VOC) are ignored.

Boxes: VOC corners are 1-based and inclusive, so a box covering pixel columns 0..9 is
written ``xmin=1, xmax=10``. Converted to the pipeline's 0-based top-left form:
``x = xmin - 1, y = ymin - 1, w = xmax - xmin + 1, h = ymax - ymin + 1``.

Split: ``ImageSets/Main/train.txt``, ``val.txt`` and ``test.txt`` by file stem (an id in train
and val is null, an id in test and another list is test); for LabelImg folders, a folder name on
the way (``train/``, ``valid/``, ``test/``); else null.
``record`` is the object's 1-based position in its file. A file without objects is an
orphan (its image has no box). XML files are parsed in a process pool.
"""

from __future__ import annotations

import os
import posixpath
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

from pawpipe.common.contracts.ingest_tables import (
    HELD_OUT,
    ORPHANS,
    RECORDS,
    SPLITS,
    conform,
    polars_schema,
    split_alias,
)
from pawpipe.ingest.pool import chunked, map_chunks, worker_count
from pawpipe.ingest.sources import Parsed, SourceOptions
from pawpipe.ingest.sources._common import (
    ROW_SCHEMA,
    Malformed,
    all_finite,
    cannot_read,
    does_not_parse,
    failure_row,
    positive_size,
    text_float,
)
from pawpipe.ingest.sources.files import admit, walk, with_refused

NAME = "voc"
LOOKS_FOR = "VOC XML"
EXTRA_COLUMNS = {"difficult": pl.Int64, "truncated": pl.Int64}
CORNERS = ("xmin", "ymin", "xmax", "ymax")
_SCHEMA = {**ROW_SCHEMA, **EXTRA_COLUMNS}
_POOL_MIN_FILES = 512  # below this a process pool costs more to start than it saves
_PEEK_BYTES = 4096

# One annotation file to parse: (xml path, image folder or None for "beside the XML", split).
Job = tuple[str, str | None, str | None]


def detect(root: Path) -> bool:
    if any(_has_xml(root / base / "Annotations") for base in _devkit_bases(root)):
        return True
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    return any(_is_voc_xml(p) for folder in folders for p in sorted(folder.glob("*.xml"))[:5])


def parse(root: Path, options: SourceOptions) -> Parsed:
    """Parse every VOC XML under ``root`` into records (one per object) and orphans."""
    unreadable: list[dict] = []
    jobs = annotation_jobs(root, unreadable)
    if not jobs and not unreadable:
        raise ValueError(
            f"{root}: expected VOC XML files (Annotations/*.xml, or *.xml whose root is <annotation>), got none"
        )
    jobs, refused = admit(
        root, jobs, max_bytes=options.max_file_bytes, allowed=options.allow_roots, rel=lambda job: job[0]
    )
    refused += unreadable
    workers = worker_count(options.workers) if len(jobs) >= _POOL_MIN_FILES else 1
    chunks = [(str(root), part) for part in chunked(jobs, workers=workers)]
    frames, orphans = [], []
    sizes = [len(part) for _, part in chunks]
    for rows, found in map_chunks(
        _parse_chunk, chunks, sizes=sizes, workers=workers, desc="parse VOC XML", unit="file", quiet=options.quiet
    ):
        frames.append(pl.DataFrame(rows, schema=_SCHEMA, orient="row"))
        orphans += found
    records = with_refused(pl.concat(frames) if frames else pl.DataFrame(schema=_SCHEMA), refused)
    return Parsed(
        records=conform(records, RECORDS, extra=list(EXTRA_COLUMNS)),
        extra_columns=list(EXTRA_COLUMNS),
        orphans=pl.DataFrame({"image_path": orphans, "group_id": orphans}, schema=polars_schema(ORPHANS)),
        notes={"annotation_files": len(jobs) + len(refused)},
    )


def annotation_jobs(root: Path, unreadable: list[dict] | None = None) -> list[Job]:
    """Every XML to parse with its image folder and split, sorted by path (the parse order); a folder that
    cannot be listed is one failure record in ``unreadable``."""
    unreadable = [] if unreadable is None else unreadable
    bases = _devkit_bases(root)
    jobs: list[Job] = []
    for base in bases:
        splits = _image_sets(root / base / "ImageSets" / "Main")
        images = posixpath.join(base, "JPEGImages")
        jobs += [
            (rel, images, splits.get(Path(rel).stem))
            for rel in _walk_xml(root, posixpath.join(base, "Annotations"), unreadable)
        ]
    if not bases:
        for rel in _walk_xml(root, "", unreadable):
            if _is_voc_xml(root / rel):
                folders = rel.split("/")[:-1]
                split = next((s for s in map(split_alias, reversed(folders)) if s), None)
                jobs.append((rel, None, split))
    return sorted(jobs)


def _devkit_bases(root: Path) -> list[str]:
    """Folders holding an ``Annotations/`` folder: the root or up to two levels down, POSIX ("" for the root)."""
    found = {
        p.parent
        for pattern in ("Annotations", "*/Annotations", "*/*/Annotations")
        for p in root.glob(pattern)
        if p.is_dir()
    }
    return sorted("" if p == root else p.relative_to(root).as_posix() for p in found)


def _has_xml(folder: Path) -> bool:
    return folder.is_dir() and any(name.endswith(".xml") for _, _, names in os.walk(folder) for name in names)


def _is_voc_xml(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"<annotation" in handle.read(_PEEK_BYTES)
    except OSError:
        return False


def _walk_xml(root: Path, under: str, unreadable: list[dict]) -> list[str]:
    found = []
    for rel, names in walk(root, under, unreadable):
        found += [posixpath.join("" if rel == "." else rel, n) for n in names if n.lower().endswith(".xml")]
    return found


def _image_sets(folder: Path) -> dict[str, str | None]:
    """Image id -> split from ``train.txt`` / ``val.txt`` / ``test.txt`` (first token per line).

    An id in train and val maps to None (``ingest.split`` assigns it); an id in test and another
    list stays in test: the dataset holds it out, so it is never trained on.
    """
    listed: dict[str, set[str]] = {}
    for split in SPLITS:
        try:
            lines = (folder / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            if line.split():
                listed.setdefault(line.split()[0], set()).add(split)
    return {
        ident: HELD_OUT if HELD_OUT in found else (found.pop() if len(found) == 1 else None)
        for ident, found in listed.items()
    }


def _parse_chunk(job: tuple[str, list[Job]]) -> tuple[list[tuple], list[str]]:
    """Rows (tuples in ``_SCHEMA`` order) for a chunk of XML files, and the images of files without objects."""
    root, files = job
    rows: list[tuple] = []
    orphans: list[str] = []
    for rel, images, split in files:
        try:
            tree = ET.parse(os.path.join(root, rel))
            orphans += _parse_tree(tree.getroot(), rel, images, split, rows)
        except (ET.ParseError, RecursionError) as exc:
            rows.append(failure_row(_SCHEMA, rel, does_not_parse(rel, "XML", exc), split=split))
        except Malformed as exc:
            rows.append(failure_row(_SCHEMA, rel, f"{rel}: {exc}", split=split))
        except OSError as exc:
            rows.append(failure_row(_SCHEMA, rel, cannot_read(rel, exc), split=split))
    return rows, orphans


def _parse_tree(doc: ET.Element, rel: str, images: str | None, split: str | None, rows: list[tuple]) -> list[str]:
    """Append one record per ``<object>``; returns the image as an orphan when there is none."""
    if doc.tag != "annotation":
        raise Malformed(f"expected root element <annotation>, got <{doc.tag}>")
    filename = _text(doc.find("filename"))
    if not filename:
        raise Malformed("expected field 'filename' (the image file name), got nothing")
    path = posixpath.join(images if images is not None else posixpath.dirname(rel), filename.replace("\\", "/"))
    size = doc.find("size")
    width = positive_size(text_float(_text(size.find("width")))) if size is not None else None
    height = positive_size(text_float(_text(size.find("height")))) if size is not None else None
    objects = doc.findall("object")
    for index, obj in enumerate(objects, start=1):
        rows.append(
            (
                rel,
                str(index),
                path,
                path,
                split,
                _text(obj.find("name")),
                *_box(obj.find("bndbox")),
                width,
                height,
                None,
                _int(_text(obj.find("difficult"))),
                _int(_text(obj.find("truncated"))),
            )
        )
    return [] if objects else [path]


def _text(element: ET.Element | None) -> str | None:
    """An element's stripped text; None when the element is absent, "" when it is empty."""
    if element is None:
        return None
    return (element.text or "").strip()


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _box(bndbox: ET.Element | None) -> tuple[float | None, float | None, float | None, float | None, str | None]:
    """0-based x, y, w, h from 1-based inclusive corners; anything not a finite number is null and the XML kept."""
    if bndbox is None:
        return None, None, None, None, None
    texts = [_text(bndbox.find(k)) for k in CORNERS]
    x0, y0, x1, y1 = (text_float(t) for t in texts)
    raw = None
    if not all_finite(x0, y0, x1, y1):
        raw = "<bndbox>" + "".join(f"<{k}>{t}</{k}>" for k, t in zip(CORNERS, texts) if t is not None) + "</bndbox>"
    return (
        x0 - 1 if x0 is not None else None,
        y0 - 1 if y0 is not None else None,
        x1 - x0 + 1 if x0 is not None and x1 is not None else None,
        y1 - y0 + 1 if y0 is not None and y1 is not None else None,
        raw,
    )
