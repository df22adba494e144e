"""Benchmark of the data diet: is half an epoch chosen by score as good as the whole one, and better than half at random?

A dataset whose redundancy is known, cleaned once (``--data``):

* ``video`` (default): frames as a 200 ms video cut gives them. Each video is one photograph and
  one class; the animal (the class shape from ``ingest.demo_data.draw_frame``) takes ``--poses``
  positions, and each pose is held for ``--repeats`` frames that differ only by a 1-2 pixel camera
  shake, a brightness flicker and the JPEG quality: ``(repeats - 1) / repeats`` of the frames
  are near-copies, and ``image.near_duplicate`` should find about that many;
* ``demo``: the embedded demo dataset (``ingest demo-data``), whose frames are new crops every
  time (little redundancy: the ingest report says how little).

Then, on the same clean validation set, with the same model, schedule and number of epochs:

* **full**: ``train run`` on every training sample; its training dynamics give
  ``train scores`` (EL2N at an early epoch, forgetting counts, AUM);
* **score**: ``shards build --select scores.parquet --keep 0.5 --by el2n`` and a new run (frames
  ingest flagged as near-copies rank last, the default);
* **el2n_only**: the same without that (``--no-near-duplicates-last``): EL2N alone;
* **random**: ``shards build --keep 0.5 --by random`` (seeded, stratified per class) and a new run.

The diet runs see half the samples per epoch, so they take about half the steps: the question is
what that costs in accuracy. Accuracies are whole-validation-set accuracy after the last epoch,
averaged over ``--seeds`` training seeds (the data and the selections stay fixed). The
ingest report's near-duplicate counts are printed too: how redundant the frames really are.

    python bench/diet_bench.py [--quick] [--data video|demo] [--videos 36] [--poses 4] [--repeats 4] [--epochs 10] [--seeds 3]

The last lines are ``RATIO diet_score_vs_random <acc_score / acc_random>`` and
``RATIO diet_vs_full <acc_score / acc_full>`` (higher is better).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.clean import clean  # noqa: E402
from ingest.config import CleanConfig  # noqa: E402
from ingest.demo_data import draw_frame, generate  # noqa: E402
from shards.build import build  # noqa: E402
from shards.config import ShardConfig  # noqa: E402
from train.audit.importance import write_scores  # noqa: E402
from train.config import load_train_config as load_config  # noqa: E402
from train.fit.run import train_from_config  # noqa: E402


CLASSES = ("happy", "calm", "sad", "angry", "afraid", "aggressive")  # one per demo shape, same order
FRAME = (160, 120)


def write_videos(root: Path, *, videos: int, val_videos: int, poses: int, repeats: int, seed: int = 0) -> int:
    """Video frames with known near-copies and ``boxes.csv`` naming them; returns the near-copy count."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.stereo_motorcycle()[0], data.retina()]
    lines, copies = ["path,label,video,split,x,y,w,h"], 0
    for v in range(videos + val_videos):
        cls, split = v % len(CLASSES), "val" if v >= videos else "train"
        for p in range(poses if split == "train" else 3 * poses):  # validation: more poses, one frame each
            rng = np.random.default_rng([seed, v, p])
            bw, bh = int(rng.integers(60, 100)), int(rng.integers(50, 90))
            bx, by = int(rng.integers(4, FRAME[0] - bw - 4)), int(rng.integers(4, FRAME[1] - bh - 4))
            scene = np.asarray(draw_frame(photos[(v // len(CLASSES)) % len(photos)], FRAME, (bx, by, bw, bh), cls, rng))
            for r in range(repeats if split == "train" else 1):
                dx, dy = (0, 0) if r == 0 else (int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
                img = Image.fromarray(np.roll(scene, (dy, dx), axis=(0, 1)))
                img = ImageEnhance.Brightness(img).enhance(1.0 if r == 0 else float(rng.uniform(0.92, 1.08)))
                rel = f"{split}/v{v:03d}/frame_{p * repeats + r:04d}.jpg"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                img.save(root / rel, format="JPEG", quality=90 if r == 0 else int(rng.integers(70, 95)))
                lines.append(f"{rel},{CLASSES[cls]},v{v:03d},{split},{bx + dx},{by + dy},{bw},{bh}")
                copies += r > 0
    (root / "boxes.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return copies


def make_shards(clean_dir: Path, out: Path, *, size: int, **select) -> Path:
    build(ShardConfig(manifest_dir=clean_dir, out=out, size=size, workers=2, quiet=True, **select))
    return out


def train(shards: Path, run_dir: Path, args: argparse.Namespace, *, seed: int) -> dict:
    cfg = load_config(values={
        "seed": seed, "data.shards": str(shards), "data.image_size": args.image_size, "data.batch_size": 16,
        "data.eval_batch_size": 64, "data.workers": 2, "compute.device": args.device, "compute.cpu_threads": 1,
        "optim.lr": 3e-3, "optim.weight_decay": 0.05, "schedule.epochs": args.epochs, "schedule.warmup_epochs": 1.0,
        "schedule.min_lr": 1e-5, "loss.label_smoothing": 0.1, "eval.patience": 0, "record.log_every_steps": 50,
        "record.progress": False, "checkpoint.every_minutes": 0,
    })  # fmt: skip
    start = time.perf_counter()
    result = train_from_config(cfg, run_dir=run_dir)
    return {"accuracy": result.last_metrics["accuracy"], "macro_f1": result.last_metrics["macro_f1"],
            "steps": result.progress.step, "seconds": time.perf_counter() - start}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small dataset, few epochs, one seed (a few minutes on 2 cores)")
    parser.add_argument("--data", choices=["video", "demo"], default="video", help="video: known near-copies; demo: ingest demo-data")
    parser.add_argument("--videos", type=int, help="training videos (video) or all videos (demo)")
    parser.add_argument("--poses", type=int, help="video: animal positions per video")
    parser.add_argument("--repeats", type=int, help="video: near-identical frames per position")
    parser.add_argument("--frames", type=int, help="demo: frames per video")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--seeds", type=int, help="training seeds per arm (accuracies averaged)")
    parser.add_argument("--keep-share", type=float, default=0.5, help="share of the training samples the diets keep")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    args.videos = args.videos or (24 if args.quick else 48)
    args.poses = args.poses or (3 if args.quick else 4)
    args.repeats = args.repeats or 4
    args.frames = args.frames or (16 if args.quick else 24)
    args.epochs = args.epochs or (6 if args.quick else 10)
    args.image_size = args.image_size or 32
    args.seeds = args.seeds or (1 if args.quick else 3)
    torch.set_num_threads(1)

    work = args.keep or Path(tempfile.mkdtemp(prefix="diet_bench_"))
    try:
        return run(work, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args: argparse.Namespace) -> int:
    size = int(round(args.image_size * 256 / 224))
    if args.data == "video":
        copies = write_videos(work / "raw", videos=args.videos, val_videos=12, poses=args.poses, repeats=args.repeats)
        shape = f"video: {args.videos} training videos x {args.poses} poses x {args.repeats} frames ({copies} near-copies), 12 validation videos x {3 * args.poses} poses x 1 frame"
    else:
        generate(work / "raw", videos=args.videos, frames=args.frames, seed=0)
        shape = f"demo: {args.videos} videos x {args.frames} frames"
    report = clean(CleanConfig(root=work / "raw", out=work / "clean", workers=2, quiet=True)).report
    manifest = pl.read_parquet(work / "clean" / "manifest.parquet")
    train_rows = manifest.filter(pl.col("split") == "train").height
    print(f"data {shape}; {train_rows} training samples, validation "
          f"{manifest.filter(pl.col('split') == 'val').height}; {args.image_size} px, {args.epochs} epochs, "
          f"{args.seeds} seed(s); {platform.processor() or platform.machine()}, {os.cpu_count()} cores")  # fmt: skip
    near = report["near_duplicates"]
    print("near-duplicate training frames (same video and label): " + ", ".join(
        f"{v['near_duplicates']} at distance <= {d} ({v['epoch_share_saved']:.1%})" for d, v in near["by_distance"].items()))  # fmt: skip
    if args.data == "video":  # the copies are known: frames after the first of each pose
        frames = manifest.filter(pl.col("split") == "train").with_columns(
            copy=pl.col("image_path").str.extract(r"frame_(\d+)\.jpg$").cast(pl.Int64) % args.repeats != 0,
            flagged=pl.col("warnings").list.contains("image.near_duplicate"),
        )
        hit = frames.filter(pl.col("copy") & pl.col("flagged")).height
        flagged = max(frames.filter(pl.col("flagged")).height, 1)
        print(f"rule image.near_duplicate (default distance 4) on the known copies: precision {hit / flagged:.3f}, "
              f"recall {hit / max(frames.filter(pl.col('copy')).height, 1):.3f}")  # fmt: skip

    full_shards = make_shards(work / "clean", work / "shards_full", size=size)
    runs: dict[str, list[dict]] = {"full": [], "score": [], "el2n_only": [], "random": []}
    runs["full"].append(train(full_shards, work / "run_full_0", args, seed=0))
    start = time.perf_counter()
    scores = write_scores([work / "run_full_0"], work / "scores.parquet")
    print(f"scores of {scores.height} samples in {time.perf_counter() - start:.1f} s (EL2N at epoch {scores['el2n_epoch'].min()})")
    diets = {
        "score": make_shards(work / "clean", work / "shards_score", size=size, select=work / "scores.parquet", keep=args.keep_share, by="el2n"),
        "el2n_only": make_shards(work / "clean", work / "shards_el2n_only", size=size, select=work / "scores.parquet",
                                 keep=args.keep_share, by="el2n", near_duplicates_last=False),
        "random": make_shards(work / "clean", work / "shards_random", size=size, keep=args.keep_share, by="random"),
    }  # fmt: skip
    for seed in range(args.seeds):
        if seed:
            runs["full"].append(train(full_shards, work / f"run_full_{seed}", args, seed=seed))
        for name, shards in diets.items():
            runs[name].append(train(shards, work / f"run_{name}_{seed}", args, seed=seed))

    print(f"\n{'run':<10} {'samples':>8} {'val accuracy':>13} {'macro-F1':>9} {'steps':>6} {'train s':>8}   per seed")
    acc = {}
    for name, rs in runs.items():
        shards = full_shards if name == "full" else diets[name]
        written = json.loads((shards / "dataset.json").read_text(encoding="utf-8"))["counts"]["train"]["written"]
        acc[name] = sum(r["accuracy"] for r in rs) / len(rs)
        f1 = sum(r["macro_f1"] for r in rs) / len(rs)
        secs = sum(r["seconds"] for r in rs) / len(rs)
        print(f"{name:<10} {written:>8} {acc[name]:>13.4f} {f1:>9.4f} {rs[0]['steps']:>6} {secs:>8.0f}   "
              + " ".join(f"{r['accuracy']:.4f}" for r in rs))  # fmt: skip
    print(f"RATIO diet_score_vs_random {acc['score'] / acc['random']:.4f}")
    print(f"RATIO diet_vs_full {acc['score'] / acc['full']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
