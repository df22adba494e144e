"""Build one planned shard: read, check, crop, encode and write its samples; journal it.

Runs in a worker process (or in-process with one worker). Everything a shard's bytes depend
on arrives in the ``ShardTask``; the result is the journal entry, written after the tars.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from pawpipe.common.contracts.tar_layout import CLS, JPG, JSON, encode_label
from pawpipe.common.images import resolve_under
from pawpipe.shards import journal
from pawpipe.shards.crop import CropError, CropPlan, encode, from_roi, plan_crop, render
from pawpipe.shards.roi import BATCH, RoiDecoder
from pawpipe.shards.writer import ShardWriter

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)  # Pillow's decode failures

_decoder: RoiDecoder | None = None  # one DALI pipeline per process, built on first use


@dataclass(frozen=True)
class ShardTask:
    out: str
    root: str
    split: str
    planned: str
    rows: list[dict]
    options: dict
    num_classes: int
    fingerprint: str
    parent_pid: int | None  # set in pool workers: they stop when orphaned by a killed parent
    allowed: tuple[str, ...] = ()  # folders outside the root that symlinks under it may lead into


class _Orphaned(Exception):
    """The parent was killed (kill -9): stop, write nothing more; a rerun redoes this shard."""


def build_shard(task: ShardTask) -> dict:
    """Build one planned shard (tars + indexes + journal entry); returns the journal entry."""
    global _decoder
    opts = task.options
    out = Path(task.out)
    writer = ShardWriter(out / task.split, task.planned, max_bytes=opts["max_bytes"])
    samples: dict[str, list] = {"sample_id": [], "key": [], "shard": [], "label_id": [], "path": []}
    failed: dict[str, list] = {"sample_id": [], "image_path": [], "reason": [], "detail": []}
    histogram = np.zeros(768, dtype=np.int64)

    def fail(row: dict, reason: str, detail: str) -> None:
        for name, value in (
            ("sample_id", row["sample_id"]),
            ("image_path", row["image_path"]),
            ("reason", reason),
            ("detail", detail),
        ):
            failed[name].append(value)

    try:
        for start in range(0, len(task.rows), BATCH):
            if task.parent_pid is not None and os.getppid() != task.parent_pid:
                raise _Orphaned
            ready: list[tuple[dict, bytes, CropPlan]] = []
            for row in task.rows[start : start + BATCH]:
                try:
                    data = _read_checked(task.root, row, task.allowed)
                    ready.append(
                        (
                            row,
                            data,
                            plan_crop(
                                row,
                                crop=opts["crop"],
                                margin=opts["margin"],
                                size=opts["size"],
                                max_upscale=opts["max_upscale"],
                            ),
                        )
                    )
                except CropError as exc:
                    fail(row, exc.reason, str(exc))
            regions = [(data, plan.box) for _, data, plan in ready if plan.path == "roi"]
            if regions and _decoder is None:
                _decoder = RoiDecoder()
            decoded = iter(_decoder.decode(regions) if regions else [])
            for row, data, plan in ready:
                try:
                    img, path = _pixels(data, plan, next(decoded) if plan.path == "roi" else None)
                except CropError as exc:
                    fail(row, exc.reason, f"{row['image_path']}: {exc}")
                    continue
                except _DECODE_ERRORS as exc:
                    fail(
                        row,
                        "image.undecodable",
                        f"{row['image_path']}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                    )
                    continue
                histogram += np.asarray(img.histogram(), dtype=np.int64)
                shard = writer.add(
                    row["key"],
                    {
                        CLS: encode_label(row["label_id"]),
                        JPG: encode(img, quality=opts["quality"]),
                        JSON: _sample_json(row, plan),
                    },
                )
                for name, value in (
                    ("sample_id", row["sample_id"]),
                    ("key", row["key"]),
                    ("shard", shard),
                    ("label_id", row["label_id"]),
                    ("path", path),
                ):
                    samples[name].append(value)
        parts = writer.close()
    except _Orphaned:
        writer.abort()
        os._exit(1)
    except BaseException:
        writer.abort()
        raise
    by_shard: dict[str, list[int]] = {part.shard: [0] * task.num_classes for part in parts}
    for shard, label_id in zip(samples["shard"], samples["label_id"]):
        by_shard[shard][label_id] += 1
    levels = np.arange(256, dtype=np.int64)
    channels = histogram.reshape(3, 256)
    entry = {
        "fingerprint": task.fingerprint,
        "split": task.split,
        "planned": task.planned,
        "parts": [
            {"shard": p.shard, "samples": p.samples, "bytes": p.bytes, "sha256": p.sha256, "classes": by_shard[p.shard]}
            for p in parts
        ],
        "samples": samples,
        "failed": failed,
        "pixels": {
            "count": int(channels[0].sum()),
            "sum": [int(v) for v in channels @ levels],
            "sum_sq": [int(v) for v in channels @ (levels * levels)],
        },
    }
    journal.write_entry(out, entry)
    return entry


def _read_checked(root: str, row: dict, allowed: tuple[str, ...] = ()) -> bytes:
    """The image's bytes, checked against the manifest's sha256 (the file ingest validated)."""
    rel = row["image_path"]
    real = resolve_under(root, rel, allowed) if rel else None
    if real is None:
        raise CropError("path.outside_root", f"{rel}: expected a path under the root {root}")
    try:
        with open(real, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise CropError("image.missing", f"{rel}: no such file under {root}") from None
    except OSError as exc:  # be specific: I/O failures only
        raise CropError("image.unreadable", f"{rel}: {type(exc).__name__}: {exc.strerror or exc}") from None
    expected = row.get("content_hash")
    if expected:
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise CropError(
                "image.changed",
                f"{rel}: sha256 {got[:16]}..., expected the manifest's {expected[:16]}... "
                "(the file changed since ingest clean)",
            )
    return data


def _pixels(data: bytes, plan: CropPlan, region) -> tuple[Image.Image, str]:
    """The stored picture and the decode path that made it. A region DALI could not decode goes
    through Pillow's full decode, which either succeeds (same picture) or names the error."""
    if plan.path != "roi":
        return render(data, plan), plan.path
    if isinstance(region, Exception):
        try:
            return render(data, replace(plan, path="full")), "full"
        except CropError:
            raise
        except _DECODE_ERRORS as exc:
            raise CropError("image.undecodable", f"DALI: {region}; Pillow: {type(exc).__name__}: {exc}") from None
    return from_roi(region, plan), "roi"


def _sample_json(row: dict, plan: CropPlan) -> bytes:
    meta = {
        "sample_id": row["sample_id"],
        "label": row["label"],
        "label_id": row["label_id"],
        "group_id": row["group_id"],
        "image_path": row["image_path"],
        "bbox": [row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]],  # x, y, w, h in oriented pixels
        "crop": list(plan.box),  # x0, y0, x1, y1 in oriented pixels
        "image_size": list(plan.image_size),
        "size": list(plan.out_size),
    }
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
