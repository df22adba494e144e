"""Benchmark of ``shards build`` against the loop a user would write, on frames like the users'.

Input: JPEG frames of 1280x720, 720x1280, 1440x1440 and 1920x1080 cut from skimage's
photographs (upscaled, with sensor-like grain so the files have a camera frame's entropy),
boxes drawn from the users' distribution (box shorter side quartiles 182 / 460 / 738 px,
median box area ~21 % of the frame), 10 % margin, stored at 256 px, JPEG quality 90.

* naive: PIL open + full decode, crop, resize (bicubic), save, ``webdataset.ShardWriter``;
* ``shards build --workers 1`` (in-process) and ``--workers 2``, each into a fresh folder,
  everything included (plan, journal, indexes, finalize);
* ``shards build --executor ray`` on a 2-CPU local Ray cluster (started once, outside the
  timings), everything included as for the CLI (connecting, the job's worker processes), and
  its outputs checked byte-identical to ``--workers 2``'s; plus Ray's per-task overhead, from
  no-op tasks through the same executor seam;

all in the same run on the same files (the page cache is warmed first). Also reported: the
decode paths taken and how far each path's pictures are from the naive full decode's.

    python bench/shards_bench.py [--quick] [--no-ray]

Every run saves its command, commit, machine, each method's timings, the spin tests and the ratios
through ``bench/result_file.py`` to ``bench/results/shards-<date>-<commit>[-no-ray][-quick]-seed0.json``.
The last lines are ``RATIO <name> <project/baseline>`` (higher is better).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import platform
import posixpath
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from ray_local import local_cluster  # noqa: E402
from result_file import Recorder  # noqa: E402  (bench/ is sys.path[0] when this script runs)

from pawpipe.common.contracts.ingest_tables import MANIFEST, conform  # noqa: E402
from pawpipe.common.contracts.labels_file import build_labels  # noqa: E402
from pawpipe.common.executor import LocalExecutor, RayExecutor  # noqa: E402
from pawpipe.shards.build import build  # noqa: E402
from pawpipe.shards.config import ShardConfig  # noqa: E402

FRAME_SIZES = [(1280, 720), (720, 1280), (1440, 1440), (1920, 1080)]
SHORT_SIDE_QUANTILES = [(0.0, 48), (0.25, 182), (0.5, 460), (0.75, 738), (1.0, 1440)]  # piecewise-linear inverse CDF
VOCABULARY = ("happy", "relaxed", "anxious", "angry", "sad", "curious")
SIZE, MARGIN, QUALITY = 256, 0.1, 90


def make_frames(n: int, rng: np.random.Generator) -> list[tuple[bytes, int, int]]:
    """JPEG frames cut from real photographs at random windows, with grain."""
    from skimage import data

    photos = [
        Image.fromarray(p) for p in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.retina())
    ]
    frames = []
    for i in range(n):
        w, h = FRAME_SIZES[i % len(FRAME_SIZES)]
        photo = photos[i % len(photos)]
        pw, ph = photo.size
        scale = min(pw / w, ph / h) * rng.uniform(0.6, 1.0)
        cw, ch = w * scale, h * scale
        x, y = rng.uniform(0, pw - cw), rng.uniform(0, ph - ch)
        img = photo.resize((w, h), Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
        grain = rng.normal(0.0, 3.0, (h, w, 1)) + rng.normal(0.0, 2.0, (h, w, 3))
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        frames.append((buf.getvalue(), w, h))
    return frames


def draw_box(w: int, h: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    u = rng.uniform()
    for (u0, s0), (u1, s1) in zip(SHORT_SIDE_QUANTILES, SHORT_SIDE_QUANTILES[1:]):
        if u <= u1:
            short = s0 + (s1 - s0) * (u - u0) / (u1 - u0)
            break
    short = min(short, min(w, h) * 0.95)
    long = short * math.exp(rng.uniform(0.0, math.log(1.8)))
    bw, bh = (short, long) if rng.uniform() < 0.5 else (long, short)
    bw, bh = min(bw, w), min(bh, h)
    return float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh


def make_dataset(base: Path, samples: int, frames: int, rng: np.random.Generator) -> tuple[Path, pl.DataFrame]:
    root, clean = base / "raw", base / "clean"
    clean.mkdir(parents=True)
    encoded = make_frames(frames, rng)
    rows = []
    for i in range(samples):
        data, w, h = encoded[i % len(encoded)]
        rel = f"video{i // 35:05d}/frame_{i:07d}.jpg"  # one file per sample, like the users' frames
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        x, y, bw, bh = draw_box(w, h, rng)
        label_id = int(rng.integers(0, len(VOCABULARY)))
        rows.append(
            {
                "sample_id": hashlib.blake2b(rel.encode(), digest_size=8).hexdigest(),
                "image_path": rel,
                "group_id": rel.split("/")[0],
                "split": "val" if i % 10 == 9 else "train",
                "label": VOCABULARY[label_id],
                "label_id": label_id,
                "bbox_x": x,
                "bbox_y": y,
                "bbox_w": bw,
                "bbox_h": bh,
                "width": w,
                "height": h,
                "image_format": "JPEG",
                "image_mode": "RGB",
                "orientation": 1,
                "file_bytes": len(data),
                "content_hash": hashlib.sha256(data).hexdigest(),
            }
        )
    manifest = conform(pl.DataFrame(rows), MANIFEST)
    manifest.write_parquet(clean / "manifest.parquet")
    (clean / "labels.json").write_text(json.dumps(build_labels(manifest, VOCABULARY, label_field="emotion")))
    (clean / "clean_config.json").write_text(json.dumps({"root": str(root.resolve())}))
    return root, manifest


def naive_build(root: Path, manifest: pl.DataFrame, out: Path, max_samples: int) -> int:
    """What a user writes: one PIL full decode per frame, crop, resize, save, ShardWriter."""
    import webdataset as wds

    out.mkdir(parents=True)
    n = 0
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=max_samples, verbose=0) as sink:
        for row in manifest.iter_rows(named=True):
            img = Image.open(root / row["image_path"]).convert("RGB")
            x, y, w, h = row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]
            box = (
                max(0, math.floor(x - MARGIN * w)),
                max(0, math.floor(y - MARGIN * h)),
                min(img.width, math.ceil(x + w + MARGIN * w)),
                min(img.height, math.ceil(y + h + MARGIN * h)),
            )
            crop = img.crop(box)
            scale = min(1.0, SIZE / min(crop.size))
            crop = crop.resize(
                (max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.Resampling.BICUBIC
            )
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=QUALITY)
            meta = {"sample_id": row["sample_id"], "label": row["label"], "bbox": [x, y, w, h], "crop": list(box)}
            sink.write(
                {"__key__": row["sample_id"], "jpg": buf.getvalue(), "cls": str(row["label_id"]).encode(), "json": meta}
            )
            n += 1
    return n


def _spin(_: int) -> float:
    start, x = time.perf_counter(), 0
    for i in range(10_000_000):
        x += i
    return time.perf_counter() - start


def free_cores() -> float:
    """How many cores two busy processes really get now (2.0 on an idle 2-core machine):
    on a shared machine this, not the code, bounds the 2-worker ratio."""
    import multiprocessing

    alone = _spin(0)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        start = time.perf_counter()
        pool.map(_spin, [0, 1])
        both = time.perf_counter() - start
    return 2 * alone / both


def timed(fn, *args, **kw) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds of this process and its finished children, result."""
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.perf_counter()
    out = fn(*args, **kw)
    wall = time.perf_counter() - start
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    return wall, cpu, out


def picture_difference(ours: Path, naive: Path, limit: int = 200) -> dict[str, float]:
    """Mean absolute pixel difference (0-255) between our samples and the naive loop's, per decode path."""
    import webdataset as wds

    theirs = {}
    for tar in sorted(naive.glob("*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            theirs[sample["__key__"]] = sample["jpg"]
    diffs: dict[str, list[float]] = {}
    for split in ("train", "val"):
        for s in pl.read_parquet(ours / split / "samples.parquet").head(limit).iter_rows(named=True):
            for sample in wds.WebDataset(str(ours / split / s["shard"]), shardshuffle=False):
                if sample["__key__"] == s["key"]:
                    a = np.asarray(Image.open(io.BytesIO(sample["jpg"])), dtype=np.int16)
                    b = np.asarray(Image.open(io.BytesIO(theirs[s["sample_id"]])), dtype=np.int16)
                    if a.shape == b.shape:
                        diffs.setdefault(s["decode_path"], []).append(float(np.abs(a - b).mean()))
                    break
    return {path: float(np.mean(v)) for path, v in sorted(diffs.items())}


def task_overhead_ms(executor, tasks: int) -> float:
    """Milliseconds per no-op task through ``executor.map`` (ordered, bounded window), after a warm-up."""
    list(executor.map(posixpath.basename, ["a/b"] * 8, workers=2))
    start = time.perf_counter()
    list(executor.map(posixpath.basename, ["a/b"] * tasks, workers=2))
    return (time.perf_counter() - start) / tasks * 1000


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".lock"
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: under a minute on 2 cores")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    args = ap.parse_args()
    rec = Recorder("shards", seed=0, args=vars(args), quick=args.quick, setting=["no_ray"] if args.no_ray else [])
    samples, frames, max_samples, repeats = (500, 20, 50, 1) if args.quick else (4000, 120, 250, 2)
    rng = np.random.default_rng(0)
    cores = os.cpu_count() or 1
    print(
        f"machine: {platform.machine()} {cores} cores, {platform.processor() or platform.platform()}, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, manifest = make_dataset(base / "data", samples, frames, rng)
        short = np.minimum(manifest["bbox_w"].to_numpy(), manifest["bbox_h"].to_numpy())
        area = (manifest["bbox_w"] * manifest["bbox_h"] / (manifest["width"] * manifest["height"])).to_numpy()
        print(
            f"input: {samples} samples on {frames} distinct frames, mean file "
            f"{manifest['file_bytes'].mean() / 1e3:.0f} kB; box short side quartiles "
            f"{np.percentile(short, [25, 50, 75]).round().astype(int).tolist()} px, median box area "
            f"{np.median(area):.0%} of the frame"
        )
        for path in root.rglob("*.jpg"):  # warm the page cache: measure decoding, not the disk
            path.read_bytes()
        cores_before = free_cores()

        def ours(workers: int | str, out: Path):
            executor = (
                {"executor": "ray", "ray_address": ray_cluster.address} if workers == "ray" else {"workers": workers}
            )
            return build(
                ShardConfig(
                    manifest_dir=base / "data" / "clean",
                    out=out,
                    **executor,
                    size=SIZE,
                    margin=MARGIN,
                    quality=QUALITY,
                    max_samples=max_samples,
                    quiet=True,
                )
            )

        with contextlib.ExitStack() as stack:
            ray_cluster = None if args.no_ray or not ray_installed() else stack.enter_context(local_cluster(num_cpus=2))
            runs = [("naive", naive_build, None), ("w1", ours, 1), ("w2", ours, 2)] + (
                [("ray", ours, "ray")] if ray_cluster else []
            )
            best: dict[str, tuple[float, float, object]] = {}
            for rep in range(repeats):  # interleaved, best of `repeats`: the machine may be shared
                for name, fn, arg in runs:
                    out = base / f"{name}-{rep}"
                    run = timed(naive_build, root, manifest, out, max_samples) if arg is None else timed(fn, arg, out)
                    if name not in best or run[0] < best[name][0]:
                        best[name] = run
            overhead = None
            if ray_cluster:
                assert tree_digest(base / "ray-0") == tree_digest(base / "w2-0"), (
                    "Ray's shards differ from the local executor's"
                )
                with RayExecutor(ray_cluster.address) as ray_executor:
                    overhead = (
                        task_overhead_ms(ray_executor, 400),
                        task_overhead_ms(LocalExecutor(), 400),
                        ray_executor.window,
                    )
        (t_naive, c_naive, n_naive), (t_one, c_one, one), (t_two, c_two, two) = best["naive"], best["w1"], best["w2"]
        assert n_naive == one.samples == two.samples == samples, (n_naive, one.samples, two.samples)
        diff = picture_difference(base / "w1-0", base / "naive-0")
        cores_after = free_cores()

    paths = ", ".join(f"{k} {v / samples:.0%}" for k, v in sorted(one.paths.items()))
    print(
        f"decode paths: {paths}; mean |difference| to the naive loop's pictures (0-255): "
        + ", ".join(f"{k} {v:.2f}" for k, v in diff.items())
    )
    print(
        f"free cores for two busy processes (spin test, 2.0 = idle machine): {cores_before:.2f} before, "
        f"{cores_after:.2f} after"
    )
    print(f"\n{'method':<42} {'samples/s':>10} {'per CPU-s':>10} {'wall s':>8} {'vs naive':>9}")
    rows = [
        ("naive PIL loop + webdataset.ShardWriter", t_naive, c_naive),
        ("shards build --workers 1", t_one, c_one),
        ("shards build --workers 2", t_two, c_two),
    ]
    if "ray" in best:
        rows.append(("shards build --executor ray (2 CPUs)", best["ray"][0], None))  # its CPU time is the cluster's
    for name, wall, cpu in rows:
        per_cpu = f"{samples / cpu:>10.1f}" if cpu else f"{'n/a':>10}"
        print(f"{name:<42} {samples / wall:>10.1f} {per_cpu} {wall:>8.1f} {t_naive / wall:>8.2f}x")
    if "ray" in best:
        ray_ms, local_ms, window = overhead
        planned = two.built
        print(
            f"Ray per-task overhead: {ray_ms:.2f} ms per no-op task (400 tasks in order, {window} in flight, warm "
            f"workers); local pool of 2: {local_ms:.2f} ms per task including the pool's start; --executor ray vs "
            f"--workers 2 on {planned} planned shards: {(best['ray'][0] - t_two) / planned * 1000:+.0f} ms per shard "
            "(connect and worker start included)"
        )
    print()
    rec.ratio("shards_vs_naive_1worker", t_naive / t_one)
    rec.ratio("shards_2w_vs_1w", t_one / t_two)
    if "ray" in best:
        rec.ratio("shards_ray_vs_local", t_two / best["ray"][0])
    methods = {
        name: {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3) if cpu else None,
            "samples_per_s": round(samples / wall, 1),
            "samples_per_cpu_s": round(samples / cpu, 1) if cpu else None,
        }
        for name, wall, cpu in rows
    }
    ray = None
    if "ray" in best:
        ray = {
            "task_ms": round(overhead[0], 3),
            "local_task_ms": round(overhead[1], 3),
            "in_flight": overhead[2],
            "per_planned_shard_ms_vs_2_workers": round((best["ray"][0] - t_two) / two.built * 1000, 1),
        }
    rec.finish(
        samples=samples,
        frames=frames,
        max_samples=max_samples,
        best_of=repeats,
        planned_shards=two.built,
        free_cores={"before": round(cores_before, 2), "after": round(cores_after, 2)},
        methods=methods,
        decode_paths={k: v / samples for k, v in sorted(one.paths.items())},
        mean_abs_difference_to_naive=diff,
        ray=ray,
    )


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("Ray not installed (pip install 'pawpipe[ray]'): the --executor ray runs are skipped")
        return False
    return True


if __name__ == "__main__":
    main()
