"""Benchmark of the near-duplicate distance: perceptual-hash distances of near-copies \
against distinct frames of one video.

Rule ``image.near_duplicate`` flags a frame within ``max_distance`` bits of the 64-bit dHash of
a frame kept before it (same video and label). Its default should catch the near-copies a 200 ms
frame cut gives and leave the distinct frames of the same video alone; this measures both.

Each scene is a short video: a camera window over one of scikit-image's photographs (a random
window, upscaled to the frame size plus a margin), the "animal" in it (a disc cut from another of
the photographs, its radius 8-34 % of the frame height: the users' boxes, short side quartiles
182 / 460 / 738 px on 1080-line frames), and every frame captured with its own sensor grain and
saved as JPEG quality 90. Against the scene's first frame:

* **near-copies** (``near``): the camera still (new grain and encode only), the camera moved by
  1, 2 or 3 px (in one of eight directions), the first frame re-encoded at quality 60-80, the
  brightness changed by -10, -5, +5 or +10 %, the view zoomed in or out by 1-2 %;
* **distinct frames** of the same video (``distinct``): the camera moved by 10, 20 or 40 px, the
  animal moved by its radius (camera still), and a later frame (camera 10-40 px, animal 0.5-1.5
  radii).

Moves are in pixels of the frame at every size, as the issue states them; a 2 px move is 1 % of a
192 px frame but 0.1 % of a 1920 px one, and the hash (a 9x8 thumbnail) sees shares, not pixels.

Every frame is written as a file and hashed the project's way: ``ingest.probe.probe_one`` (the
1/8-scale JPEG decode of the whole-file check, then ``ingest.probe.dhash``), distances with
``validation_rules.perceptual.hamming``; at each frame size of ``--sizes`` (the users' frames are
1920x1080 and 1280x720, the demo's 320x240, the rule's test frames 192x144). There is no naive
baseline: the question is which
distance, not how fast. Printed: the distance percentiles per kind and per frame size, and for
max_distance 0..12 the share of near-copies caught (recall) and of distinct frames wrongly flagged,
with the largest distance that flags at most 1 % of the distinct frames. Saved as JSON (command,
commit, machine, seed, every figure) through ``bench/result_file.py`` to
``bench/results/frame_hash-<date>-<commit>[-quick]-seed<seed>.json``.

    python bench/frame_hash_bench.py [--quick] [--seed 0] [--scenes 48] [--sizes 192x144,320x240,1280x720,1920x1080]

``--quick`` (6 scenes per size, 360 frames) takes about 15 s on 2 cores; the default (48 scenes
per size, 2880 frames) about 3 minutes. The last lines are ``RATIO near_copy_recall <share>`` and
``RATIO distinct_kept <share>`` (higher is better) at the rule's default distance
(``--max-distance`` to ask about another).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import PIL
import polars as pl
from PIL import Image, ImageDraw, ImageEnhance, features
from result_file import Recorder  # noqa: E402  (bench/ is sys.path[0] when this script runs)

from pawpipe.ingest.probe import probe_one  # noqa: E402
from pawpipe.validation_rules.perceptual import hamming  # noqa: E402
from pawpipe.validation_rules.ruleset import RuleSet  # noqa: E402

NEAR = ("still", "shift1", "shift2", "shift3", "requality", "bright-10", "bright-5", "bright+5", "bright+10", "zoom")
DISTINCT = ("pan10", "pan20", "pan40", "animal_moved", "later")
DISTANCES = tuple(range(0, 13))
PERCENTILES = (5, 50, 90, 95, 99)
RADIUS_BINS = ((0.08, 0.16), (0.16, 0.25), (0.25, 0.35))  # the animal's radius over the frame height
FALSE_FLAG_LIMIT = 0.01  # the share of distinct frames a default may flag
MARGIN = 48  # world pixels around the first frame's window: room for a 40 px pan and a 2 % zoom
DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))
QUALITY = 90


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
    from skimage import data

    return (
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.stereo_motorcycle()[0],
        data.retina(),
        data.immunohistochemistry(),
    )


class Scene:
    """One video: a world (the photo window, upscaled, with room to pan) and an animal in it."""

    def __init__(self, photo: np.ndarray, other: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> None:
        w, h = size
        ww, wh = w + 2 * MARGIN, h + 2 * MARGIN
        ph, pw = photo.shape[:2]
        cw = min(pw, ph * ww / wh) * rng.uniform(0.6, 0.95)
        ch = cw * wh / ww
        x0, y0 = rng.uniform(0, pw - cw), rng.uniform(0, ph - ch)
        self.world = (
            Image.fromarray(photo)
            .convert("RGB")
            .resize((ww, wh), Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
        )
        self.size = size
        self.share = rng.uniform(0.08, 0.34)  # the animal's radius over the frame height (the users' box sizes)
        self.radius = int(h * self.share)
        d = 2 * self.radius
        oh, ow = other.shape[:2]
        side = min(oh, ow) * rng.uniform(0.3, 0.6)
        sx, sy = rng.uniform(0, ow - side), rng.uniform(0, oh - side)
        self.animal = (
            Image.fromarray(other)
            .convert("RGB")
            .resize((d, d), Image.Resampling.BICUBIC, box=(sx, sy, sx + side, sy + side))
        )
        self.mask = Image.new("L", (d, d))
        ImageDraw.Draw(self.mask).ellipse((0, 0, d - 1, d - 1), fill=255)
        self.centre = (w * rng.uniform(0.3, 0.7), h * rng.uniform(0.35, 0.65))

    def capture(
        self,
        rng: np.random.Generator,
        *,
        camera: tuple[int, int] = (0, 0),
        animal: tuple[float, float] = (0.0, 0.0),
        zoom: float = 1.0,
        brightness: float = 1.0,
    ) -> bytes:
        """A frame (JPEG bytes): the camera moved by ``camera`` px, the animal by ``animal`` px, with fresh grain."""
        w, h = self.size
        img = self.world.copy()
        left = int(round(MARGIN + self.centre[0] + animal[0])) - self.radius
        top = int(round(MARGIN + self.centre[1] + animal[1])) - self.radius
        img.paste(self.animal, (left, top), self.mask)
        x0, y0 = MARGIN + camera[0], MARGIN + camera[1]
        if zoom == 1.0:
            img = img.crop((x0, y0, x0 + w, y0 + h))
        else:
            mx, my, zw, zh = x0 + w / 2, y0 + h / 2, w / zoom, h / zoom
            img = img.resize(
                (w, h), Image.Resampling.BILINEAR, box=(mx - zw / 2, my - zh / 2, mx + zw / 2, my + zh / 2)
            )
        if brightness != 1.0:
            img = ImageEnhance.Brightness(img).enhance(brightness)
        grain = (
            rng.standard_normal((h, w, 1), dtype=np.float32) * 3 + rng.standard_normal((h, w, 3), dtype=np.float32) * 2
        )
        return jpeg(
            Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8)), QUALITY
        )


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def step(rng: np.random.Generator, px: float) -> tuple[int, int]:
    """A move of ``px`` pixels (the larger of x and y) in one of eight directions."""
    dx, dy = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
    return int(round(dx * px)), int(round(dy * px))


def toward(rng: np.random.Generator, length: float) -> tuple[float, float]:
    """A move of ``length`` pixels in a uniformly drawn direction."""
    angle = rng.uniform(0, 2 * np.pi)
    return length * float(np.cos(angle)), length * float(np.sin(angle))


def scene_frames(scene: Scene, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """The scene's first frame, then one frame of every kind, each with its own grain and encode."""
    first = scene.capture(rng)
    r = scene.radius
    frames = [("first", first), ("still", scene.capture(rng))]
    frames += [(f"shift{k}", scene.capture(rng, camera=step(rng, k))) for k in (1, 2, 3)]
    frames.append(("requality", jpeg(Image.open(io.BytesIO(first)), int(rng.integers(60, 81)))))
    frames += [(f"bright{b:+d}", scene.capture(rng, brightness=1 + b / 100)) for b in (-10, -5, 5, 10)]
    frames.append(("zoom", scene.capture(rng, zoom=1 + float(rng.choice([-1, 1])) * rng.uniform(0.01, 0.02))))
    frames += [(f"pan{k}", scene.capture(rng, camera=step(rng, k))) for k in (10, 20, 40)]
    frames.append(("animal_moved", scene.capture(rng, animal=toward(rng, r))))
    frames.append(
        (
            "later",
            scene.capture(rng, camera=step(rng, rng.uniform(10, 40)), animal=toward(rng, r * rng.uniform(0.5, 1.5))),
        )
    )
    return frames


def measure_scene(task: tuple[int, int, tuple[int, int]]) -> list[dict]:
    """Distances of one scene's frames to its first frame, each frame written and probed as ingest does."""
    seed, index, size = task
    rng = np.random.default_rng([seed, index, *size])
    pics = photos()
    photo = int(index % len(pics))
    scene = Scene(pics[photo], pics[(photo + 1 + int(rng.integers(len(pics) - 1))) % len(pics)], size, rng)
    frames = scene_frames(scene, rng)
    hashes = {}
    with tempfile.TemporaryDirectory(prefix="frame_hash_") as root:
        for kind, data in frames:
            Path(root, f"{kind}.jpg").write_bytes(data)
            row = probe_one(root, f"{kind}.jpg")
            assert row["status"] == "ok" and row["dhash"] is not None, row
            hashes[kind] = np.uint64(row["dhash"])
    return [
        {
            "size": f"{size[0]}x{size[1]}",
            "scene": index,
            "photo": photo,
            "animal_radius": round(scene.share, 3),
            "kind": kind,
            "near": kind in NEAR,
            "distance": int(hamming(hashes["first"], hashes[kind])),
        }
        for kind, _ in frames[1:]
    ]


def summarise(rows: pl.DataFrame) -> dict:
    """Every figure the tables show: percentiles per kind (all sizes, and per size), recall and false flags
    per distance."""

    def pct(d: pl.Series) -> dict:
        a = d.to_numpy()
        # inverted CDF: p95 is the smallest distance that holds 95 % of the frames (a distance a rule can use)
        return {
            "n": int(a.size),
            **{f"p{q}": int(np.percentile(a, q, method="inverted_cdf")) for q in PERCENTILES},
            "max": int(a.max()),
            "mean": round(float(a.mean()), 3),
        }

    sizes = rows.get_column("size").unique(maintain_order=True).to_list()
    kinds = {}
    for kind in (*NEAR, *DISTINCT):
        part = rows.filter(pl.col("kind") == kind)
        kinds[kind] = {
            "near": kind in NEAR,
            "all": pct(part.get_column("distance")),
            "by_size": {s: pct(part.filter(pl.col("size") == s).get_column("distance")) for s in sizes},
            "histogram": np.bincount(part.get_column("distance").to_numpy(), minlength=65).tolist(),
            "caught": {str(d): round(float((part.get_column("distance") <= d).mean()), 4) for d in DISTANCES},
        }

    def rates(part: pl.DataFrame) -> dict:
        near = part.filter(pl.col("near")).get_column("distance")
        distinct = part.filter(~pl.col("near")).get_column("distance")
        return {
            str(d): {
                "near_copy_recall": round(float((near <= d).mean()), 4),
                "distinct_flagged": round(float((distinct <= d).mean()), 4),
            }
            for d in DISTANCES
        }

    by_distance = rates(rows)
    within = [d for d in DISTANCES if by_distance[str(d)]["distinct_flagged"] <= FALSE_FLAG_LIMIT]
    youden = {d: by_distance[str(d)]["near_copy_recall"] - by_distance[str(d)]["distinct_flagged"] for d in DISTANCES}
    moved = rows.filter(pl.col("kind") == "animal_moved")
    by_radius = {}
    for lo, hi in RADIUS_BINS:
        part = moved.filter((pl.col("animal_radius") >= lo) & (pl.col("animal_radius") < hi)).get_column("distance")
        by_radius[f"{lo:.2f}-{hi:.2f}"] = {
            "n": part.len(),
            "p50": int(np.percentile(part.to_numpy(), 50, method="inverted_cdf")) if part.len() else None,
            "within_4": round(float((part <= 4).mean()), 4) if part.len() else None,
        }
    return {
        "kinds": kinds,
        "by_distance": by_distance,
        "by_distance_per_size": {s: rates(rows.filter(pl.col("size") == s)) for s in sizes},
        "animal_moved_by_radius": by_radius,
        "largest_distance_within_limit": max(within) if within else None,
        "distance_max_recall_minus_flagged": max(youden, key=lambda d: (round(youden[d], 4), -d)),
    }


def print_tables(summary: dict, sizes: list[str], default: int) -> None:
    kinds = summary["kinds"]
    print(f"\nHamming distance to the scene's first frame (64-bit dHash), {kinds['still']['all']['n']} frames per kind")
    head = "".join(f"{'p' + str(q):>6}" for q in PERCENTILES)
    print(f"{'kind':<14} {'':<8}{head}{'max':>6}   " + "  ".join(f"{s + ' p50/p95':>20}" for s in sizes))
    for kind, k in kinds.items():
        per = "  ".join(f"{k['by_size'][s]['p50']:>13} / {k['by_size'][s]['p95']:<4}" for s in sizes)
        print(
            f"{kind:<14} {'near' if k['near'] else 'distinct':<8}"
            + "".join(f"{k['all']['p' + str(q)]:>6}" for q in PERCENTILES)
            + f"{k['all']['max']:>6}   {per}"
        )
    print(
        f"\n{'max_distance':>12} {'recall':>8} {'flagged':>8}   "
        + "  ".join(f"{s + ' recall/flagged':>26}" for s in sizes)
    )
    for d in DISTANCES:
        r = summary["by_distance"][str(d)]
        per = "  ".join(
            f"{summary['by_distance_per_size'][s][str(d)]['near_copy_recall']:>17.3f} / "
            f"{summary['by_distance_per_size'][s][str(d)]['distinct_flagged']:<6.3f}"
            for s in sizes
        )
        mark = "  <- default" if d == default else ""
        print(f"{d:>12} {r['near_copy_recall']:>8.3f} {r['distinct_flagged']:>8.3f}   {per}{mark}")
    print("\nper kind, share within the distance: " + ", ".join(f"d={d}" for d in (2, 4, 6, 8, 10, 12)))
    for kind, k in kinds.items():
        print(f"  {kind:<14} " + " ".join(f"{k['caught'][str(d)]:>6.3f}" for d in (2, 4, 6, 8, 10, 12)))
    print(
        "animal moved by its radius, by radius (share of the frame height): "
        + ", ".join(
            f"{b}: median {v['p50']}, {v['within_4']:.0%} within 4 (n={v['n']})"
            for b, v in summary["animal_moved_by_radius"].items()
            if v["n"]
        )
    )
    largest = summary["largest_distance_within_limit"]
    flag0 = summary["by_distance"]["0"]["distinct_flagged"]
    print(
        f"\nlargest max_distance flagging at most {FALSE_FLAG_LIMIT:.0%} of the distinct frames: "
        + (str(largest) if largest is not None else f"none (distance 0 already flags {flag0:.1%})")
    )
    best = summary["distance_max_recall_minus_flagged"]
    r = summary["by_distance"][str(best)]
    print(
        f"max_distance with the largest recall - flagged share: {best} (recall {r['near_copy_recall']:.3f}, flagged "
        f"{r['distinct_flagged']:.3f})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 scenes per frame size: about 15 s on 2 cores")
    ap.add_argument("--seed", type=int, default=0, help="seeds every scene: window, animal, moves, grain, qualities")
    ap.add_argument("--scenes", type=int, help="scenes (videos) per frame size (default 48; --quick 6)")
    ap.add_argument("--sizes", default="192x144,320x240,1280x720,1920x1080", help="frame sizes, WxH, comma-separated")
    ap.add_argument(
        "--max-distance", type=int, help="the distance the RATIO lines report (default: the rule's default)"
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes generating and hashing frames")
    ap.add_argument(
        "--out",
        type=Path,
        help="the result JSON (default bench/results/frame_hash-<date>-<commit>[-quick]-seed<seed>.json)",
    )
    args = ap.parse_args()
    scenes = args.scenes or (6 if args.quick else 48)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    default = RuleSet.load().param("image.near_duplicate", "max_distance")
    at = default if args.max_distance is None else args.max_distance
    rec = Recorder(
        "frame_hash",
        seed=args.seed,
        args=vars(args),
        quick=args.quick,
        out=args.out,
        versions={
            "pillow": PIL.__version__,
            "libjpeg_turbo": features.version("libjpeg_turbo"),
            "numpy": np.__version__,
        },
    )
    machine = rec.doc["machine"]
    print(
        f"frame hash bench: seed {args.seed}, {scenes} scenes x {len(sizes)} sizes x {len(NEAR) + len(DISTINCT)} "
        f"frames; commit {rec.commit}; {machine['cpu']}, {machine['cores']} cores"
    )

    start = time.perf_counter()
    tasks = [(args.seed, i, size) for size in sizes for i in range(scenes)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = pl.DataFrame([row for part in pool.map(measure_scene, tasks) for row in part])
    seconds = time.perf_counter() - start
    summary = summarise(rows)
    size_names = [f"{w}x{h}" for w, h in sizes]
    print_tables(summary, size_names, at)
    print(f"{rows.height} frames hashed in {seconds:.1f} s")

    near, distinct = (
        rows.filter(pl.col("near")).get_column("distance"),
        rows.filter(~pl.col("near")).get_column("distance"),
    )
    rec.ratio("near_copy_recall", (near <= at).mean())
    rec.ratio("distinct_kept", (distinct > at).mean())
    rec.finish(
        scenes_per_size=scenes,
        sizes=size_names,
        photos=len(photos()),
        jpeg_quality=QUALITY,
        near_kinds=list(NEAR),
        distinct_kinds=list(DISTINCT),
        false_flag_limit=FALSE_FLAG_LIMIT,
        rule_default=default,
        ratio_distance=at,
        hash_seconds=round(seconds, 1),
        **summary,
        distances=rows.select("size", "scene", "photo", "animal_radius", "kind", "distance").to_dicts(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
