"""Benchmark of ``ingest clean``'s three costly parts against what a user would write by hand.

1. Parsing an AI Hub label tree of realistic shape (35 frames per video, 15 keypoints):
   ``ingest.sources.aihub.parse`` vs a json.load loop that builds a list of dicts.
2. Applying every rule to the parsed rows: the polars rule engine vs a per-row pydantic model.
3. The whole-file image check (JPEG decoded at 1/8 scale) vs a naive full PIL decode, per core.

    python bench/ingest_bench.py [--quick]

Every run saves its command, commit, machine, each stage's timings and the ratios through
``bench/result_file.py`` to ``bench/results/ingest-<date>-<commit>[-quick]-seed0.json``. The last
lines are ``RATIO <name> <project/baseline>`` (higher is better).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from pydantic import BaseModel, ValidationError, field_validator
from result_file import Recorder  # noqa: E402  (bench/ is sys.path[0] when this script runs)

from pawpipe.ingest.probe import probe_images  # noqa: E402
from pawpipe.ingest.sources import SourceOptions  # noqa: E402
from pawpipe.ingest.sources.aihub import EMOTIONS, FRAMES_DIR, LABELS_DIR, parse  # noqa: E402
from pawpipe.validation_rules import RuleSet, apply_rules  # noqa: E402


def make_label_tree(root: Path, videos: int, frames: int, rng: np.random.Generator) -> int:
    """Label files like the users' (no images: parsing alone is measured)."""
    for v in range(videos):
        species, action = ("CAT", "ARCH") if v % 2 else ("DOG", "SIT")
        folder = root / "Training" / LABELS_DIR / species / action
        folder.mkdir(parents=True, exist_ok=True)
        anns = []
        for f in range(frames):
            x, y = (int(a) for a in rng.integers(-20, 900, 2))
            anns.append(
                {
                    "frame_number": f * 3,
                    "timestamp": f * 100,
                    "bounding_box": {
                        "x": x,
                        "y": y,
                        "width": int(rng.integers(50, 700)),
                        "height": int(rng.integers(50, 500)),
                    },
                    "keypoints": {
                        str(k): ({"x": int(x + k), "y": int(y + k)} if k % 3 else None) for k in range(1, 16)
                    },
                }
            )
        doc = {
            "file_video": f"v{v}.mp4",
            "metadata": {
                "seq": v,
                "species": species,
                "action": "걷기/뛰기",
                "location": "실내",
                "height": 720,
                "width": 1280,
                "duration": 10,
                "animal": {"breed": "믹스", "gender": "F", "age": "3", "neuter": "Y"},
                "owner": {"pain": "N", "disease": "N", "emotion": EMOTIONS[v % 6], "situation": "x", "animalCount": 1},
                "inspect": {
                    "action": action,
                    "painDisease": "N",
                    "abnormalAction": "N",
                    "emotion": EMOTIONS[(v * 7) % 6],
                },
            },
            "annotations": anns,
        }
        (folder / f"v{v:06d}.mp4.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return videos * frames


def naive_parse(root: Path) -> pl.DataFrame:
    """What a user writes: glob, json.load, one dict per frame, a DataFrame at the end."""
    rows = []
    for path in sorted(root.glob(f"*/{LABELS_DIR}/*/*/*.json")):
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        meta = doc["metadata"]
        for ann in doc["annotations"]:
            box = ann["bounding_box"]
            frame_dir = str(path.parent.relative_to(root)).replace(LABELS_DIR, FRAMES_DIR) + "/" + path.name[:-5]
            rows.append(
                {
                    "image_path": f"{frame_dir}/frame_{ann['frame_number']}_timestamp_{ann['timestamp']}.jpg",
                    "label": meta["inspect"]["emotion"],
                    "owner": meta["owner"]["emotion"],
                    "x": box["x"],
                    "y": box["y"],
                    "w": box["width"],
                    "h": box["height"],
                    "exists": os.path.exists(
                        root / f"{frame_dir}/frame_{ann['frame_number']}_timestamp_{ann['timestamp']}.jpg"
                    ),
                }
            )
    return pl.DataFrame(rows)


class NaiveRecord(BaseModel):
    """A per-row validator a user would write with pydantic: the same checks and messages."""

    source_file: str
    record: str
    group_id: str
    split: str
    label: str | None
    bbox_x: float | None
    bbox_y: float | None
    bbox_w: float | None
    bbox_h: float | None
    status: str
    width: int | None
    height: int | None
    meta_width: int | None
    meta_height: int | None
    content_hash: str | None

    @field_validator("bbox_x", "bbox_y", "bbox_w", "bbox_h")
    @classmethod
    def finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("box value not finite")
        return v


def naive_rules(rows: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Loop over rows: validate, check each rule, clip, collect reasons; duplicates via a dict.

    It delivers what the engine delivers: a clean table (with repairs and warnings) and a
    rejected table (with rules and messages), as DataFrames ready to write.
    """
    vocab = set(EMOTIONS)
    clean, rejected, keeper = [], [], {}
    for row in rows:
        try:
            r = NaiveRecord(**row)
        except ValidationError as exc:
            rejected.append((row, ["bbox.invalid"], [str(exc).splitlines()[0]]))
            continue
        rules, details, repairs = [], [], []
        if r.status != "ok":
            rules.append(f"image.{r.status}")
            details.append(f"image: {r.status}")
        if r.label is None or not r.label.strip():
            rules.append("label.missing")
            details.append("no label")
        elif r.label not in vocab:
            rules.append("label.unknown")
            details.append(f"label {r.label!r} not in vocabulary")
        if None in (r.bbox_x, r.bbox_y, r.bbox_w, r.bbox_h):
            rules.append("bbox.invalid")
            details.append("box has nulls")
        else:
            x, y, w, h = r.bbox_x, r.bbox_y, r.bbox_w, r.bbox_h
            if x < 0 or y < 0:
                if x >= -16 and y >= -16:
                    repairs.append(f"bbox.negative: ({x}, {y})")
                    w, h, x, y = w + min(x, 0), h + min(y, 0), max(x, 0), max(y, 0)
                else:
                    rules.append("bbox.negative")
                    details.append(f"box ({x}, {y}, {w}, {h}) negative")
            if r.width is not None and (x + w > r.width or y + h > r.height):
                if max(x + w - r.width, y + h - r.height) <= 16:
                    repairs.append(f"bbox.out_of_bounds: ({x}, {y}, {w}, {h})")
                    w, h = min(x + w, r.width) - x, min(y + h, r.height) - y
                else:
                    rules.append("bbox.out_of_bounds")
                    details.append(f"box ({x}, {y}, {w}, {h}) outside {r.width}x{r.height}")
            if w < 8 or h < 8:
                rules.append("bbox.empty")
                details.append(f"box ({x}, {y}, {w}, {h}) too small")
        warnings = ["image.size_mismatch"] if (r.meta_width, r.meta_height) != (r.width, r.height) else []
        if rules:
            # as the engine: on a rejected row a repairable violation is listed too (nothing is repaired)
            rules += [note.split(":", 1)[0] for note in repairs]
            rejected.append((row, rules, details))
            continue
        group = ("1" if r.split == "val" else "0") + r.group_id
        if r.content_hash in keeper and keeper[r.content_hash] != group:
            rejected.append((row, ["image.duplicate"], ["duplicate"]))
            continue
        keeper.setdefault(r.content_hash, group)
        if repairs:
            row = {**row, "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h}
        clean.append((row, repairs, warnings))
    clean_frame = pl.DataFrame([{**row, "repairs": rep, "warnings": warn} for row, rep, warn in clean])
    rejected_frame = pl.DataFrame([{**row, "rule": rules, "detail": " | ".join(d)} for row, rules, d in rejected])
    return clean_frame, rejected_frame


def assert_same_parse(records: pl.DataFrame, naive: pl.DataFrame) -> None:
    """The columns the naive loop delivers hold the same values, row for row."""
    ours = records.select(
        "image_path",
        "label",
        pl.col("owner_emotion").alias("owner"),
        *(pl.col(f"bbox_{c}").cast(pl.Int64).alias(c) for c in "xywh"),
    ).sort("image_path")
    theirs = naive.select("image_path", "label", "owner", "x", "y", "w", "h").sort("image_path")
    assert ours.equals(theirs), "the parser and the naive loop disagree"


def assert_same_rules(outcome, clean: pl.DataFrame, rejected: pl.DataFrame) -> None:
    """The same rows kept (with the same repaired boxes) and the same rows rejected for the same rules."""
    keep = ["image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h"]
    ours = outcome.clean.select(keep).sort("image_path")
    theirs = clean.select(keep).sort("image_path")
    assert ours.equals(theirs), "kept rows or their repaired boxes differ"
    ours_rej = outcome.rejected.select("image_path", pl.col("rule").list.sort()).sort("image_path")
    theirs_rej = rejected.select("image_path", pl.col("rule").list.sort()).sort("image_path")
    assert ours_rej.equals(theirs_rej), "rejected rows or their rules differ"


def rule_frame(n: int, rng: np.random.Generator) -> pl.DataFrame:
    """n parsed-and-probed rows with realistic dirt: ~2 % negative, ~2 % past the edge, ~1 % tiny
    boxes, ~1 % unknown labels, ~1 % missing images (the users' data, as they describe it)."""
    w, h = rng.uniform(50, 700, n), rng.uniform(50, 500, n)
    x, y = rng.uniform(0, 1, n) * (1280 - w), rng.uniform(0, 1, n) * (720 - h)
    u = rng.random(n)
    x = np.where(u < 0.02, -rng.uniform(1, 60, n), x)
    w = np.where((u >= 0.02) & (u < 0.04), 1280 - x + rng.uniform(1, 60, n), w)
    h = np.where((u >= 0.04) & (u < 0.05), rng.uniform(0, 6, n), h)
    labels = np.array(list(EMOTIONS) + ["몰라"])
    label = np.where(rng.random(n) < 0.01, 6, rng.integers(0, 6, n))
    return pl.DataFrame(
        {
            "source_file": [f"f{i // 35}.json" for i in range(n)],
            "record": [str(i % 35) for i in range(n)],
            "image_path": [f"img/{i}.jpg" for i in range(n)],
            "group_id": [f"v{i // 35}" for i in range(n)],
            "split": np.where(rng.random(n) < 0.1, "val", "train"),
            "label": labels[label],
            "bbox_x": x,
            "bbox_y": y,
            "bbox_w": w,
            "bbox_h": h,
            "bbox_raw": [None] * n,
            "meta_width": np.full(n, 1280),
            "meta_height": np.full(n, 720),
            "parse_error": [None] * n,
            "status": np.where(rng.random(n) < 0.01, "missing", "ok"),
            "error": [None] * n,
            "width": np.full(n, 1280),
            "height": np.full(n, 720),
            "content_hash": [f"h{i}" for i in range(n)],
        },
        schema_overrides={"bbox_raw": pl.String, "parse_error": pl.String, "error": pl.String},
    )


def make_images(root: Path, n: int, rng: np.random.Generator) -> list[str]:
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    sizes = [(1280, 720), (720, 1280), (1440, 1440), (1920, 1080)]
    names = []
    for i in range(n):
        img = Image.fromarray(photos[i % len(photos)]).resize(sizes[i % len(sizes)], Image.Resampling.BILINEAR)
        noise = rng.integers(0, 12, (img.size[1], img.size[0], 3), dtype=np.uint8)  # real photo texture, not flat
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        name = f"img{i:05d}.jpg"
        img.save(root / name, quality=90)
        names.append(name)
    return names


def naive_image_check(root: Path, names: list[str]) -> int:
    ok = 0
    for name in names:
        try:
            with Image.open(root / name) as img:
                img.convert("RGB").load()
            ok += 1
        except OSError:
            pass
    return ok


def timed(fn, *args, **kw) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: under a minute on 2 cores")
    args = ap.parse_args()
    rec = Recorder("ingest", seed=0, args=vars(args), quick=args.quick, versions={"polars": pl.__version__})
    videos, frames = (6000, 35) if args.quick else (61000, 35)
    rule_rows = 200_000 if args.quick else 2_000_000
    images = 24 if args.quick else 120
    rng = np.random.default_rng(0)
    cores = os.cpu_count() or 1
    print(f"machine: {platform.machine()} {cores} cores, Python {platform.python_version()}, polars {pl.__version__}")
    results, pool = [], None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n = make_label_tree(root / "labels", videos, frames, rng)
        # Like with like: one process on both sides (the naive loop has no pool).
        t_ours, parsed = timed(lambda: parse(root / "labels", SourceOptions(workers=1, quiet=True)))
        t_naive, naive = timed(naive_parse, root / "labels")
        assert_same_parse(parsed.records, naive)
        results.append(("parse AI Hub labels, 1 process", n, "records", t_ours, t_naive, "parse_vs_naive"))
        if cores > 1:
            t_pool, _ = timed(lambda: parse(root / "labels", SourceOptions(workers=cores, quiet=True)))
            pool = {"processes": cores, "records": n, "seconds": round(t_pool, 3), "per_s": round(n / t_pool, 1)}
            print(f"  parse with {cores} processes: {n / t_pool:,.0f} records/s ({t_ours / t_pool:.2f}x one process)")

        frame = rule_frame(rule_rows, rng)
        ruleset = RuleSet.load().with_params("label.unknown", vocabulary=EMOTIONS)
        t_ours, outcome = timed(apply_rules, frame, ruleset)
        rows = frame.to_dicts()
        t_naive, (naive_clean, naive_rejected) = timed(naive_rules, rows)
        assert_same_rules(outcome, naive_clean, naive_rejected)
        results.append(("apply all rules", rule_rows, "rows", t_ours, t_naive, "rules_vs_pydantic_loop"))
        print(
            f"  rules: both kept the same {outcome.clean.height:,} rows and rejected the same "
            f"{outcome.rejected.height:,} for the same rules"
        )

        (root / "img").mkdir()
        names = make_images(root / "img", images, rng)
        t_ours, probes = timed(probe_images, root / "img", names, workers=1, quiet=True)
        t_naive, ok = timed(naive_image_check, root / "img", names)
        assert probes.filter(pl.col("status") == "ok").height == ok == images
        results.append(
            ("whole-file image check, 1 core", images, "images", t_ours, t_naive, "image_check_vs_full_decode")
        )

    print(f"\n{'stage':<34} {'items':>10} {'pawpipe/s':>12} {'naive/s':>12} {'ratio':>7}")
    for name, count, unit, ours, naive, _ in results:
        print(
            f"{name:<34} {count:>10,} {count / ours:>12,.0f} {count / naive:>12,.0f} {naive / ours:>6.1f}x   ({unit})"
        )
    print()
    for *_, ours, naive, key in results:
        rec.ratio(key, naive / ours)
    stages = {
        key: {
            "stage": name,
            "items": count,
            "unit": unit,
            "pawpipe_s": round(ours, 3),
            "naive_s": round(naive, 3),
            "pawpipe_per_s": round(count / ours, 1),
            "naive_per_s": round(count / naive, 1),
        }
        for name, count, unit, ours, naive, key in results
    }
    rec.finish(label_files=videos, records=n, rule_rows=rule_rows, images=images, stages=stages, parse_pool=pool)


if __name__ == "__main__":
    main()
