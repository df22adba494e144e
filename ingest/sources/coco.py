"""COCO object-detection JSON: one record per entry of ``annotations``.

    <root>/annotations/instances_train2017.json + <root>/train2017/*.jpg         (COCO download)
    <root>/annotations/instances_val2017.json   + <root>/images/val2017/*.jpg    (Ultralytics)
    <root>/train/_annotations.coco.json         + <root>/train/*.jpg             (Roboflow)

Which files: ``SourceOptions.annotations`` when given; otherwise every JSON at the root, in
``annotations/`` or one folder down whose first MiB names a COCO key (``images``,
``annotations``, ``categories``), so train and val are parsed together. When some of them are
``instances_*`` files only those are kept: the COCO download ships ``captions_*`` and
``person_keypoints_*`` beside them, which would add caption rows or duplicate the person boxes.

Where the images are: ``file_name`` is joined to the first folder that exists among
``images/<tail>``, ``<tail>``, ``images`` (each looked for next to the JSON, then at the root;
``<tail>`` is the JSON stem after its last underscore, ``instances_train2017`` -> ``train2017``),
else the JSON's own folder. Only folders are checked, never image files, so a ``file_name``
such as ``../x.jpg`` reaches the path rules unchanged.

Split: a token of the JSON stem (``instances_val2017`` -> val, ``instances_test2017`` -> test),
else a folder name on the way from the root to the JSON (``valid/_annotations.coco.json`` -> val,
``test/_annotations.coco.json`` -> test), else null.

Group: an image's ``video_id`` (the COCO-VID convention: frames of one video) names its video: the
``name`` of that entry of ``videos[]`` when there is one, else ``<json>#video<id>``; an image
without one is its own group until ``ingest.grouping`` looks at its name.

``bbox`` is already ``[x, y, width, height]`` in pixels. Labels are category names; an
unknown ``category_id`` becomes its number as text, so ``label.unknown`` quarantines it.
An ``images[]`` or ``categories[]`` id written twice with different content makes each annotation
naming it ``annotation.malformed`` (it could mean either); a key written twice in one object makes
the whole file one. A category that is other categories' ``supercategory`` and has no annotation
(Roboflow's placeholder, id 0) is no class: it is left out of the vocabulary and the report names it.
``record`` is the annotation ``id``. Orphans are the ``images[]`` entries that no annotation
names (COCO's background images); image files that no ``images[]`` entry lists are not looked for.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import polars as pl

from pawpipe.common.contracts.ingest_tables import ORPHANS, RECORDS, conform, polars_schema, split_alias
from pawpipe.ingest.sources import Parsed, SourceOptions
from pawpipe.ingest.sources._common import (
    ROW_SCHEMA,
    all_finite,
    cannot_read,
    does_not_parse,
    failure_row,
    is_int64,
    json_float,
    positive_size,
)
from pawpipe.ingest.sources.files import DuplicateKey, NotUnicode, admit, loads_json, may_repeat_keys, with_refused

NAME = "coco"
LOOKS_FOR = "a COCO instances JSON"
EXTRA_COLUMNS = {"iscrowd": pl.Int64}
_PEEK_BYTES = 1 << 20
_COCO_KEY = re.compile(rb'"(?:images|annotations|categories)"\s*:')
_SCHEMA = {**ROW_SCHEMA, **EXTRA_COLUMNS}
T = TypeVar("T")


def detect(root: Path) -> bool:
    return any(_looks_like_coco(p) for p in _json_files(root))


def parse(root: Path, options: SourceOptions) -> Parsed:
    """Parse every COCO instances JSON under ``root`` (or the one named) into records and orphans."""
    files = [options.annotations.replace("\\", "/")] if options.annotations else annotation_files(root)
    if not files:
        raise ValueError(
            f"{root}: expected a COCO instances JSON at the root, in annotations/ or one folder down, got none"
        )
    rows: list[tuple] = []
    orphans: list[str] = []
    names: dict[int | str, str] = {}
    facts = _CategoryFacts()
    for rel in files:
        if not (root / rel).exists():
            raise ValueError(f"{root / rel}: expected a COCO JSON file, got nothing")
    admitted, refused = admit(root, files, max_bytes=options.max_file_bytes, allowed=options.allow_roots)
    for rel in admitted:
        orphans += _parse_file(root, rel, rows, names, facts)
    records = with_refused(pl.DataFrame(rows, schema=_SCHEMA, orient="row"), refused)
    # Roboflow's placeholder: a category named after the others' supercategory, with no box of its own, is no class.
    placeholders = {i: name for i, name in names.items() if i not in facts.used and name in facts.supercategories}
    kept = [i for i in sorted(names, key=_id_order) if i not in placeholders]
    notes: dict = {"annotation_files": files}
    if placeholders:
        notes["categories_left_out"] = [
            f"{names[i]} (id {i}: the supercategory of others, no annotations)"
            for i in sorted(placeholders, key=_id_order)
        ]
    return Parsed(
        records=conform(records, RECORDS, extra=list(EXTRA_COLUMNS)),
        extra_columns=list(EXTRA_COLUMNS),
        vocabulary=tuple(dict.fromkeys(names[i] for i in kept)) if kept else None,
        orphans=pl.DataFrame({"image_path": orphans, "group_id": orphans}, schema=polars_schema(ORPHANS)),
        notes=notes,
    )


@dataclass
class _CategoryFacts:
    """What the vocabulary needs to know across files: the category ids boxes use, the supercategory names."""

    used: set = field(default_factory=set)
    supercategories: set[str] = field(default_factory=set)


def _by_id(entries: Iterable[tuple[int | str, T]]) -> tuple[dict[int | str, T], dict[int | str, list[T]]]:
    """Entries by id, and the ids written more than once with different content (each value as written):
    a box naming such an id could mean either."""
    found: dict[int | str, T] = {}
    twice: dict[int | str, list[T]] = {}
    for ident, value in entries:
        if ident in found and found[ident] != value:
            twice.setdefault(ident, [found[ident]]).append(value)
        found.setdefault(ident, value)
    return found, twice


def _ambiguous(values: list) -> str:
    shown = [v[0] if isinstance(v, tuple) else v for v in values]
    return f"{len(values)} entries ({', '.join(json.dumps(v, ensure_ascii=False) for v in shown[:3])})"


def _once_per_file(annotations: int) -> dict[str, int]:
    """How often a file without a repeated key names the keys its records are read from."""
    return {
        "images": 1,
        "annotations": 1,
        "categories": 1,
        "image_id": annotations,
        "category_id": annotations,
        "bbox": annotations,
    }


def annotation_files(root: Path) -> list[str]:
    """The COCO JSONs that ``parse`` reads, POSIX relative to ``root``, sorted."""
    found = sorted(p.relative_to(root).as_posix() for p in _json_files(root) if _looks_like_coco(p))
    instances = [rel for rel in found if posixpath.basename(rel).startswith("instances")]
    return instances or found


def _json_files(root: Path) -> list[Path]:
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    return [p for folder in folders for p in sorted(folder.glob("*.json")) if p.is_file()]


def _looks_like_coco(path: Path) -> bool:
    """A cheap look at the first MiB: a JSON object naming a COCO top-level key."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK_BYTES)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and _COCO_KEY.search(head) is not None


def image_folder(root: Path, rel: str) -> str:
    """The folder (POSIX, relative to ``root``, "" for the root) that ``file_name`` values are relative to."""
    folder = posixpath.dirname(rel)
    tail = Path(rel).stem.rsplit("_", 1)[-1]
    bases = list(dict.fromkeys([folder, ""]))
    for sub in (f"images/{tail}", tail, "images"):
        for base in bases:
            candidate = posixpath.join(base, sub)
            if (root / candidate).is_dir():
                return candidate
    return folder


def _split(rel: str) -> str | None:
    stem_tokens = re.split(r"[^A-Za-z0-9]+", Path(rel).stem)
    for token in [*stem_tokens, *reversed(rel.split("/")[:-1])]:
        split = split_alias(token) if token else None
        if split:
            return split
    return None


def _parse_file(
    root: Path, rel: str, rows: list[tuple], names: dict[int | str, str], facts: _CategoryFacts
) -> list[str]:
    """Append ``rel``'s annotations to ``rows`` and its categories to ``names``; returns its orphan images.

    Rows are tuples in ``_SCHEMA`` order: a million annotations are a million tuples, not dicts.
    """
    try:
        data = (root / rel).read_bytes()
        doc = loads_json(data)
        if (
            isinstance(doc, dict)
            and isinstance(doc.get("annotations"), list)
            and may_repeat_keys(data, _once_per_file(len(doc["annotations"])))
        ):
            doc = loads_json(data, unique_keys=True)
    except (json.JSONDecodeError, UnicodeDecodeError, NotUnicode, RecursionError) as exc:
        rows.append(failure_row(_SCHEMA, rel, does_not_parse(rel, "JSON", exc)))
        return []
    except DuplicateKey as exc:
        rows.append(failure_row(_SCHEMA, rel, f"{rel}: {exc}"))
        return []
    except OSError as exc:
        rows.append(failure_row(_SCHEMA, rel, cannot_read(rel, exc)))
        return []
    got = {key: doc.get(key) if isinstance(doc, dict) else None for key in ("images", "annotations", "categories")}
    bad = [key for key, value in got.items() if not isinstance(value, list)]
    if bad:
        found = f"keys {sorted(doc)}" if isinstance(doc, dict) else type(doc).__name__
        rows.append(failure_row(_SCHEMA, rel, f"{rel}: expected top-level lists {', '.join(bad)}, got {found}"))
        return []

    categories, twice = _by_id(
        (c["id"], c["name"])
        for c in got["categories"]
        if isinstance(c, dict) and _is_id(c.get("id")) and isinstance(c.get("name"), str)
    )
    for cid, name in categories.items():
        names.setdefault(cid, name)
    for c in got["categories"]:
        if isinstance(c, dict) and isinstance(c.get("supercategory"), str) and c.get("name") != c["supercategory"]:
            facts.supercategories.add(c["supercategory"])
    folder = image_folder(root, rel)
    split = _split(rel)
    videos = _video_names(rel, doc.get("videos"))
    # image id -> (image_path, width, height, group); an entry without a usable file_name cannot be named.
    entries = []
    for img in got["images"]:
        if isinstance(img, dict) and _is_id(img.get("id")) and isinstance(img.get("file_name"), str):
            path = posixpath.join(folder, img["file_name"].replace("\\", "/"))
            video = img.get("video_id")
            group = videos.get(video, f"{rel}#video{video}") if _is_id(video) else path
            entries.append(
                (img["id"], (path, positive_size(img.get("width")), positive_size(img.get("height")), group))
            )
    images, images_twice = _by_id(entries)

    used: set[int | str] = set()
    for index, ann in enumerate(got["annotations"]):
        if not isinstance(ann, dict):
            where = f"annotations[{index}]"
            rows.append(
                failure_row(
                    _SCHEMA,
                    rel,
                    f"{rel}: {where}: expected an object, got {type(ann).__name__}",
                    record=where,
                    split=split,
                )
            )
            continue
        ann_id = ann.get("id")
        record = str(ann_id) if _is_id(ann_id) else f"annotations[{index}]"
        image_id = ann.get("image_id")
        image = images.get(image_id) if _is_id(image_id) else None
        if image is not None:
            used.add(image_id)
        path, width, height, group = image or (None, None, None, None)
        category_id = ann.get("category_id")
        error = None
        if image is None:
            error = (
                f"{rel}: annotation {record}: expected field 'image_id' naming an entry of images[] with a file_name, "
                f"got {json.dumps(image_id)}"
            )
        elif image_id in images_twice:
            error = (
                f"{rel}: annotation {record}: image_id {json.dumps(image_id)} names "
                f"{_ambiguous(images_twice[image_id])} in images[]: ambiguous"
            )
        elif _is_id(category_id) and category_id in twice:
            error = (
                f"{rel}: annotation {record}: category_id {json.dumps(category_id)} names "
                f"{_ambiguous(twice[category_id])} in categories[]: ambiguous"
            )
        if _is_id(category_id):
            facts.used.add(category_id)
        iscrowd = ann.get("iscrowd")
        rows.append(
            (
                rel,
                record,
                path,
                group,
                split,
                _label(category_id, categories),
                *_box(ann),
                width,
                height,
                error,
                iscrowd if is_int64(iscrowd) else None,
            )
        )
    return [path for image_id, (path, *_) in images.items() if image_id not in used]


def _video_names(rel: str, videos: object) -> dict[int | str, str]:
    """COCO-VID's ``videos[]``: video id -> its ``name`` (the group of its frames, the same in the train and
    val files); an id without a name is grouped as ``<file>#video<id>``, ids being per file."""
    if not isinstance(videos, list):
        return {}
    return {
        v["id"]: v["name"]
        for v in videos
        if isinstance(v, dict) and _is_id(v.get("id")) and isinstance(v.get("name"), str) and v["name"]
    }


def _is_id(v: object) -> bool:
    """COCO ids are integers; some exporters write strings. Either is matched exactly, never coerced."""
    return type(v) in (int, str)


def _id_order(v: int | str) -> tuple[bool, int | str]:
    return isinstance(v, str), v


def _label(category_id: object, categories: dict[int, str]) -> str | None:
    if category_id is None:
        return None
    if _is_id(category_id) and category_id in categories:
        return categories[category_id]
    return category_id if isinstance(category_id, str) else json.dumps(category_id)


def _box(ann: dict) -> tuple[float | None, float | None, float | None, float | None, str | None]:
    """The four box numbers; anything not a finite number is null and the box as written is kept."""
    if "bbox" not in ann:
        return None, None, None, None, None
    box = ann["bbox"]
    if type(box) is list and len(box) == 4:
        x, y, w, h = (json_float(v) for v in box)
        return x, y, w, h, None if all_finite(x, y, w, h) else json.dumps(box, ensure_ascii=False)
    return None, None, None, None, json.dumps(box, ensure_ascii=False)
