"""AI Hub pet-video layout: one JSON per video, frames as JPEGs in a folder per video.

    {Training,Validation}/라벨링데이터/{CAT,DOG}/<ACTION>/<stem>.mp4.json
    {Training,Validation}/원천데이터/{CAT,DOG}/<ACTION>/<stem>.mp4/frame_<n>_timestamp_<ms>.jpg

A record is one annotated frame. Frames are matched to files by frame number (the
timestamp in file names is not reliably formatted), so a JSON frame without a JPEG
becomes ``image.missing`` and a JPEG without a JSON frame is reported as an orphan.
Label files are parsed in a process pool; each worker returns columns, not row objects.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import msgspec
import polars as pl

from pawpipe.common.contracts.ingest_tables import ORPHANS, RECORDS, conform, empty, polars_schema
from pawpipe.ingest.pool import chunked, map_chunks, worker_count
from pawpipe.ingest.sources import Parsed, SourceOptions
from pawpipe.ingest.sources._common import (
    INT64,
    Malformed,
    all_finite,
    cannot_read,
    does_not_parse,
    failure,
    is_int64,
    is_number,
    json_float,
)
from pawpipe.ingest.sources.files import (
    NotUnicode,
    admit,
    bad_name,
    clip,
    loads_json,
    may_repeat_keys,
    shown,
    walk,
    with_refused,
)

NAME = "aihub"
LOOKS_FOR = "AI Hub 라벨링데이터 folders"
LABELS_DIR, FRAMES_DIR = "라벨링데이터", "원천데이터"
SPLIT_DIRS = {"Training": "train", "Validation": "val"}
EMOTIONS = ("행복/즐거움", "편안/안정", "불안/슬픔", "화남/불쾌", "공포", "공격성")
DOG_ACTIONS = (
    "BODYLOWER",
    "BODYSCRATCH",
    "BODYSHAKE",
    "FEETUP",
    "FOOTUP",
    "HEADING",
    "LYING",
    "MOUNTING",
    "SIT",
    "TAILING",
    "TAILLOW",
    "TURN",
    "WALKRUN",
)
CAT_ACTIONS = (
    "ARCH",
    "ARMSTRETCH",
    "FOOTPUSH",
    "GETDOWN",
    "GROOMING",
    "HEADING",
    "LAYDOWN",
    "LYING",
    "ROLL",
    "SITDOWN",
    "TAILING",
    "WALKRUN",
)
LABEL_FIELDS = ("inspect.emotion", "owner.emotion", "action", "species")
VOCABULARIES = {
    "inspect.emotion": EMOTIONS,
    "owner.emotion": EMOTIONS,
    "action": tuple(sorted(set(DOG_ACTIONS) | set(CAT_ACTIONS))),
    "species": ("CAT", "DOG"),
}
EXTRA_COLUMNS = {
    "species": pl.String,
    "action": pl.String,
    "action_text": pl.String,
    "owner_emotion": pl.String,
    "inspect_emotion": pl.String,
    "breed": pl.String,
    "gender": pl.String,
    "age": pl.String,
    "neuter": pl.String,
    "location": pl.String,
    "frame_number": pl.Int64,
    "timestamp_ms": pl.Float64,
    "keypoints_visible": pl.Int64,
}
_FRAME = re.compile(r"^frame_(\d+)_timestamp_.*\.(?:jpe?g|png)$", re.IGNORECASE)
_COLUMNS = [f.name for f in RECORDS] + list(EXTRA_COLUMNS)


def detect(root: Path) -> bool:
    return any((root / split / LABELS_DIR).is_dir() for split in SPLIT_DIRS)


def label_files(root: Path, unreadable: list[dict] | None = None) -> list[str]:
    """Every label JSON under the root, POSIX relative paths, sorted (the parse order); a folder that
    cannot be listed is one failure record in ``unreadable``."""
    found: list[str] = []
    unreadable = [] if unreadable is None else unreadable
    for split in SPLIT_DIRS:
        for rel, names in walk(root, f"{split}/{LABELS_DIR}", unreadable):
            found += [f"{rel}/{n}" for n in names if n.endswith(".json")]
    return sorted(found)


def parse(root: Path, options: SourceOptions) -> Parsed:
    """Parse every label file under ``root`` into records (one per annotated frame) and orphans."""
    if options.label not in LABEL_FIELDS:
        raise ValueError(f"--label for aihub: expected one of {', '.join(LABEL_FIELDS)}, got {options.label!r}")
    unreadable: list[dict] = []
    files, refused = admit(
        root, label_files(root, unreadable), max_bytes=options.max_file_bytes, allowed=options.allow_roots
    )
    refused += unreadable
    workers = worker_count(options.workers)
    jobs = [(str(root), options.label, part) for part in chunked(files, workers=workers)]
    frames, orphan_paths, seen_dirs = [], [], set()
    sizes = [len(part) for _, _, part in jobs]
    for columns, orphans, dirs in map_chunks(
        _parse_chunk, jobs, sizes=sizes, workers=workers, desc="parse labels", unit="file", quiet=options.quiet
    ):
        frames.append(pl.DataFrame(columns, schema=_SCHEMA))
        orphan_paths += orphans
        seen_dirs.update(dirs)
    orphan_paths += _unlabelled_frames(root, seen_dirs)
    orphan_paths = [shown(p) for p in orphan_paths]
    records = with_refused(
        pl.concat(frames)
        if frames
        else empty(RECORDS).with_columns(
            pl.lit(None, dtype=dtype).alias(name) for name, dtype in EXTRA_COLUMNS.items()
        ),
        refused,
    )
    orphans = pl.DataFrame(
        {"image_path": orphan_paths, "group_id": [p.rsplit("/", 2)[-2] for p in orphan_paths]},
        schema={"image_path": pl.String, "group_id": pl.String},
    )
    return Parsed(
        records=conform(records, RECORDS, extra=list(EXTRA_COLUMNS)),
        extra_columns=list(EXTRA_COLUMNS),
        vocabulary=VOCABULARIES[options.label],
        orphans=conform(orphans, ORPHANS),
        notes={"label_files": len(files) + len(refused)},
    )


_SCHEMA = {**polars_schema(RECORDS), **EXTRA_COLUMNS}


def _parse_chunk(job: tuple[str, str, list[str]]) -> tuple[dict[str, list], list[str], list[str]]:
    root, label_field, files = job
    cols: dict[str, list] = {c: [] for c in _COLUMNS}
    orphans: list[str] = []
    dirs: list[str] = []
    for rel in files:
        if len(rel.split("/")) < 5:
            _append_failure(
                cols,
                rel,
                None,
                f"{rel}: expected a label file at {{split}}/{LABELS_DIR}/{{species}}/{{action}}/<video>.json",
            )
            continue
        frame_dir = _frame_dir(rel)
        dirs.append(frame_dir)
        try:
            on_disk = _list_frames(os.path.join(root, frame_dir))
        except OSError as exc:  # a frame folder the OS will not list: this video's records, the others go on
            _append_failure(
                cols,
                rel,
                None,
                f"{rel}: cannot list its frame folder {frame_dir} ({exc.strerror or exc}); its frames were not read",
            )
            continue
        try:
            with open(os.path.join(root, rel), "rb") as handle:
                data = handle.read()
            try:
                doc = _DECODER.decode(data)
                if may_repeat_keys(data, _once_per_file(len(doc.annotations))):
                    raise msgspec.ValidationError("a key may be written twice")
                referenced = _parse_typed(doc, rel, frame_dir, label_field, on_disk, cols)
            except msgspec.MsgspecError:
                # Anything off the well-formed shape (a null box, a string width, NaN, a missing
                # frame number, broken JSON, a key written twice) takes the lenient path, which says exactly what.
                referenced = _parse_doc(loads_json(data, unique_keys=True), rel, frame_dir, label_field, on_disk, cols)
        except (json.JSONDecodeError, UnicodeDecodeError, NotUnicode, RecursionError) as exc:
            _append_failure(cols, rel, None, does_not_parse(rel, "JSON", exc))
            referenced = set()
        except OverflowError as exc:  # an integer no float can hold, where a number is expected
            _append_failure(cols, rel, None, f"{rel}: a number out of range: {exc}")
            referenced = set()
        except Malformed as exc:
            _append_failure(cols, rel, None, f"{rel}: {exc}")
            referenced = set()
        except OSError as exc:
            _append_failure(cols, rel, None, cannot_read(rel, exc))
            referenced = set()
        orphans += [f"{frame_dir}/{name}" for n, name in sorted(on_disk.items()) if n not in referenced]
    return cols, orphans, dirs


def _once_per_file(annotations: int) -> dict[str, int]:
    """How often a file without a repeated key names the keys its records are read from."""
    return {
        "metadata": 1,
        "annotations": 1,
        "inspect": 1,
        "owner": 1,
        "emotion": 2,
        "frame_number": annotations,
        "bounding_box": annotations,
    }


def _frame_dir(label_rel: str) -> str:
    split, _, species, action, name = label_rel.split("/")[-5:]
    return f"{split}/{FRAMES_DIR}/{species}/{action}/{name[: -len('.json')]}"


def _list_frames(folder: str) -> dict[int, str]:
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found = {}
    for name in names:
        match = _FRAME.match(name)
        if match:
            found[int(match.group(1))] = name
    return found


def _get(obj: object, key: str, where: str) -> object:
    if not isinstance(obj, dict):
        raise Malformed(f"expected field '{where}' to be an object, got {type(obj).__name__}")
    return obj.get(key)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _video(meta: dict, rel: str, label_field: str) -> dict:
    """The per-video values every record of a label file shares."""
    owner = meta.get("owner") if isinstance(meta.get("owner"), dict) else {}
    inspect = meta.get("inspect") if isinstance(meta.get("inspect"), dict) else {}
    animal = meta.get("animal") if isinstance(meta.get("animal"), dict) else {}
    split_dir, _, species_dir, action_dir, name = rel.split("/")[-5:]
    video = {
        "group_id": name[: -len(".json")],
        "split": SPLIT_DIRS.get(split_dir),
        "meta_width": _size(meta.get("width"), "metadata.width"),
        "meta_height": _size(meta.get("height"), "metadata.height"),
        "species": _text(meta.get("species")) or species_dir,
        "action": action_dir,
        "action_text": _text(meta.get("action")),
        "owner_emotion": _text(owner.get("emotion")),
        "inspect_emotion": _text(inspect.get("emotion")),
        "breed": _text(animal.get("breed")),
        "gender": _text(animal.get("gender")),
        "age": _text(animal.get("age")),
        "neuter": _text(animal.get("neuter")),
        "location": _text(meta.get("location")),
    }
    video["label"] = {
        "inspect.emotion": video["inspect_emotion"],
        "owner.emotion": video["owner_emotion"],
        "action": action_dir,
        "species": video["species"],
    }[label_field]
    return video


class _Box(msgspec.Struct):
    x: float
    y: float
    width: float
    height: float


class _Point(msgspec.Struct):
    x: float
    y: float


class _Annotation(msgspec.Struct):
    frame_number: int
    bounding_box: _Box
    timestamp: float | None = None
    keypoints: dict[str, _Point | None] | None = None


class _Document(msgspec.Struct):
    metadata: dict
    annotations: list[_Annotation]


# The well-formed shape, decoded straight into typed objects (several times json.loads + dict
# access); a file that does not fit it is re-read by the lenient path.
_DECODER = msgspec.json.Decoder(_Document)


def _parse_typed(doc: _Document, rel, frame_dir, label_field, on_disk, cols) -> set[int]:
    video = _video(doc.metadata, rel, label_field)
    rows = []
    for ann in doc.annotations:
        if not INT64[0] <= ann.frame_number <= INT64[1]:  # is_int64, inlined: once per frame
            raise msgspec.ValidationError("frame_number beyond int64")  # the lenient path says which record
        box = ann.bounding_box
        x, y, w, h = box.x, box.y, box.width, box.height
        # all_finite, inlined: this runs once per frame (x - x is nan for inf and nan); 1e999 decodes to inf.
        if not (x - x == 0.0 and y - y == 0.0 and w - w == 0.0 and h - h == 0.0):
            x, y, w, h, raw = _box(msgspec.to_builtins(box))
        else:
            raw = None
        points = ann.keypoints
        visible = len(points) - list(points.values()).count(None) if points is not None else None
        rows.append((ann.frame_number, ann.timestamp, x, y, w, h, raw, visible))
    return _append_records(cols, rel, frame_dir, on_disk, video, rows)


def _parse_doc(doc, rel, frame_dir, label_field, on_disk, cols) -> set[int]:
    meta = _get(doc, "metadata", "metadata")
    annotations = _get(doc, "annotations", "annotations")
    if not isinstance(meta, dict):
        raise Malformed(f"expected field 'metadata' (object), got {type(meta).__name__}")
    if not isinstance(annotations, list):
        raise Malformed(f"expected field 'annotations' (list), got {type(annotations).__name__}")
    video = _video(meta, rel, label_field)
    rows = []
    for index, ann in enumerate(annotations):
        frame = ann.get("frame_number") if isinstance(ann, dict) else None
        if not is_int64(frame):
            got = "not an object" if not isinstance(ann, dict) else clip(frame)
            _append_failure(
                cols,
                rel,
                str(index),
                f"{rel}: annotations[{index}]: expected field 'frame_number' (integer), got {got}",
                video,
            )
            continue
        stamp = ann.get("timestamp")
        points = ann.get("keypoints")
        visible = len(points) - list(points.values()).count(None) if type(points) is dict else None
        rows.append((frame, json_float(stamp), *_box(ann.get("bounding_box")), visible))
    return _append_records(cols, rel, frame_dir, on_disk, video, rows)


def _append_records(cols, rel, frame_dir, on_disk, video, rows) -> set[int]:
    """Append one label file's records column by column (no row dicts: this runs 2 million times)."""
    referenced = set()
    source, record, image_path = cols["source_file"], cols["record"], cols["image_path"]
    bx, by, bw, bh, raw = cols["bbox_x"], cols["bbox_y"], cols["bbox_w"], cols["bbox_h"], cols["bbox_raw"]
    frame_col, stamp_col, points_col, error_col = (
        cols["frame_number"],
        cols["timestamp_ms"],
        cols["keypoints_visible"],
        cols["parse_error"],
    )
    rule_col = cols["parse_rule"]
    kept = 0
    for frame, stamp, x, y, w, h, r, visible in rows:
        referenced.add(frame)
        name_on_disk = on_disk.get(frame) or f"frame_{frame}_timestamp_{_stamp_text(stamp)}.jpg"
        why = bad_name(name_on_disk)
        if why:
            shown_path = shown(f"{frame_dir}/{name_on_disk}")
            message = f"{rel}: frame {frame}: image '{shown_path}': the file name {why}; rename it"
            _append_failure(cols, rel, str(frame), message, video, rule="path.bad_name", image_path=shown_path)
            continue
        kept += 1
        source.append(rel)
        record.append(str(frame))
        image_path.append(f"{frame_dir}/{name_on_disk}")
        bx.append(x), by.append(y), bw.append(w), bh.append(h), raw.append(r)
        error_col.append(None)
        rule_col.append(None)
        frame_col.append(frame)
        stamp_col.append(stamp)
        points_col.append(visible)
    # Video-level values are the same for every row of this file, so appending them in bulk
    # keeps the columns aligned even when record-level failures were appended in between.
    for key in _VIDEO_COLUMNS:
        cols[key].extend([video.get(key)] * kept)
    return referenced


_VIDEO_COLUMNS = [
    c
    for c in _COLUMNS
    if c
    not in (
        "source_file",
        "record",
        "image_path",
        "bbox_x",
        "bbox_y",
        "bbox_w",
        "bbox_h",
        "bbox_raw",
        "parse_error",
        "frame_number",
        "timestamp_ms",
        "keypoints_visible",
        "parse_rule",
    )
]


def _append_failure(cols, rel, record, message, video=None, *, rule=None, image_path=None) -> None:
    row = {**(video or {}), **failure(rel, message, record=record, image_path=image_path, rule=rule)}
    for key in _COLUMNS:
        cols[key].append(row.get(key))


def _box(box: object) -> tuple[float | None, float | None, float | None, float | None, str | None]:
    """The four box numbers; anything not a finite number becomes null and the raw box is kept.

    An integer beyond a double's range raises ``OverflowError``: the file is reported as malformed.
    """
    if type(box) is not dict:
        return None, None, None, None, json.dumps(box, ensure_ascii=False)
    values = (box.get("x"), box.get("y"), box.get("width"), box.get("height"))
    x, y, w, h = (float(v) if is_number(v) and math.isfinite(v) else None for v in values)
    return x, y, w, h, None if all_finite(x, y, w, h) else json.dumps(box, ensure_ascii=False)


def _size(v: object, where: str) -> int | None:
    """A size the metadata claims: an integer, null when absent; one beyond int64 is a malformed file."""
    if not is_number(v) or not math.isfinite(v):
        return None
    if not INT64[0] <= v <= INT64[1]:
        raise Malformed(f"expected field '{where}' (an integer size), got {clip(v)}")
    return int(v)


def _stamp_text(stamp: object) -> str:
    if is_number(stamp) and float(stamp).is_integer():
        return str(int(stamp))
    return str(stamp)


def _unlabelled_frames(root: Path, seen_dirs: set[str]) -> list[str]:
    """Frames in video folders that have no label file at all (orphans too)."""
    orphans = []
    for split in SPLIT_DIRS:
        # A frame folder that cannot be listed is said where a label file names it (``_parse_chunk``).
        for rel, names in walk(root, f"{split}/{FRAMES_DIR}", []):
            if rel in seen_dirs or not names:
                continue
            orphans += [f"{rel}/{n}" for n in names if _FRAME.match(n)]
    return orphans
