"""Benchmark of the data diet: is half an epoch chosen by score as good as the whole one, \
and better than half at random?

A dataset whose redundancy is known, cleaned once (``--data``):

* ``video`` (default): frames as a 200 ms video cut gives them. Each video is one photograph and
  one class; the animal (the class shape from ``ingest.demo.data.draw_frame``) takes ``--poses``
  positions, and each pose is held for ``--repeats`` frames that differ only by a 1-2 pixel camera
  shake, a brightness flicker and the JPEG quality: ``(repeats - 1) / repeats`` of the frames
  are near-copies, and ``image.near_duplicate`` should find about that many;
* ``demo``: the embedded demo dataset (``ingest demo-data``), whose frames are new crops every
  time (little redundancy: the ingest report says how little).

Then, on the same clean validation set, with the same model, schedule and number of epochs:

* **full**: ``train run`` on every training sample; its training dynamics give
  ``train scores`` (EL2N at an early epoch, forgetting counts, AUM);
Four diet arms keep the same share (``--keep-share``, 0.5) of each class, so each pair differs in
one thing:

* **random**: ``shards build --keep 0.5 --by random --no-near-duplicates-last`` (seeded, stratified
  per class): the baseline;
* **dedup**: ``shards build --keep 0.5`` (random with near-copies last, the default without scores):
  the frames ingest flagged as near-copies go first, the rest is the random draw: **de-duplication alone**;
* **score**: ``--select scores.parquet --by el2n`` (near-copies last, the default): the score with
  de-duplication;
* **score_only**: the same with ``--no-near-duplicates-last``: EL2N alone.

"score beats random" would partly measure de-duplication; the question a score must answer is
whether **score** beats **dedup**. The diet runs see half the samples per epoch, so they take about
half the steps: what does that cost in accuracy? Each arm runs ``--seeds`` training seeds (the data
and the selections stay fixed); each run's accuracy is reported two ways: after the last epoch, and
the mean of the last ``--last-k`` epochs' evaluations (steadier: one epoch's wobble is not the
effect). Every seed's figure is printed and saved; the table gives mean and spread (min-max). The
ingest report's near-duplicate counts are printed too: how redundant the frames really are.

    python bench/diet_bench.py [--quick] [--data video|demo] [--videos 48] [--poses 4] [--repeats 4]
        [--epochs 10] [--seeds 3] [--last-k 3]

The result is saved to ``bench/results/diet-<date>-<commit>-seed0-1-2.json`` (``bench/result_file.py``).
The last lines are ``RATIO diet_score_vs_dedup``, ``RATIO diet_score_vs_random``, ``RATIO diet_dedup_vs_random``
and ``RATIO diet_vs_full`` (score / full), each on the last-k mean accuracy averaged over the seeds
(higher is better).
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
from result_file import Recorder  # noqa: E402  (bench/ is sys.path[0] when this script runs)

from pawpipe.ingest.clean import clean  # noqa: E402
from pawpipe.ingest.config import CleanConfig  # noqa: E402
from pawpipe.ingest.demo.data import draw_frame, generate  # noqa: E402
from pawpipe.shards.build import build  # noqa: E402
from pawpipe.shards.config import ShardConfig  # noqa: E402
from pawpipe.train.audit.importance import write_scores  # noqa: E402
from pawpipe.train.config import load_train_config as load_config  # noqa: E402
from pawpipe.train.fit.run import train_from_config  # noqa: E402

CLASSES = ("happy", "calm", "sad", "angry", "afraid", "aggressive")  # one per demo shape, same order
FRAME = (160, 120)


def write_videos(root: Path, *, videos: int, val_videos: int, poses: int, repeats: int, seed: int = 0) -> int:
    """Video frames with known near-copies and ``boxes.csv`` naming them; returns the near-copy count."""
    from skimage import data

    photos = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.stereo_motorcycle()[0],
        data.retina(),
    ]
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
    cfg = load_config(
        values={
            "seed": seed,
            "data.shards": str(shards),
            "data.image_size": args.image_size,
            "data.batch_size": 16,
            "data.eval_batch_size": 64,
            "data.workers": 2,
            "compute.device": args.device,
            "compute.cpu_threads": 1,
            "optim.lr": 3e-3,
            "optim.weight_decay": 0.05,
            "schedule.epochs": args.epochs,
            "schedule.warmup_epochs": 1.0,
            "schedule.min_lr": 1e-5,
            "loss.label_smoothing": 0.1,
            "eval.patience": 0,
            "record.log_every_steps": 50,
            "record.progress": False,
            "checkpoint.every_minutes": 0,
        }
    )
    start = time.perf_counter()
    result = train_from_config(cfg, run_dir=run_dir)
    epochs = [
        e["accuracy"]
        for e in map(json.loads, (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines())
        if e.get("event") == "eval" and e.get("end_of_epoch")
    ]
    return {
        "accuracy": result.last_metrics["accuracy"],
        "last_k": float(np.mean(epochs[-args.last_k :])),
        "epochs": epochs,
        "macro_f1": result.last_metrics["macro_f1"],
        "steps": result.progress.step,
        "seconds": time.perf_counter() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small dataset, few epochs, one seed (a few minutes on 2 cores)"
    )
    parser.add_argument(
        "--data", choices=["video", "demo"], default="video", help="video: known near-copies; demo: ingest demo-data"
    )
    parser.add_argument("--videos", type=int, help="training videos (video) or all videos (demo)")
    parser.add_argument("--poses", type=int, help="video: animal positions per video")
    parser.add_argument("--repeats", type=int, help="video: near-identical frames per position")
    parser.add_argument("--frames", type=int, help="demo: frames per video")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument(
        "--seeds", type=int, help="training seeds per arm (3; every seed reported, then mean and spread)"
    )
    parser.add_argument("--last-k", type=int, default=3, help="also report the mean accuracy of the last K epochs (3)")
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
    rec = Recorder(
        "diet",
        seed=list(range(args.seeds)),
        setting=[args.data] if args.data != "video" else [],
        args=vars(args),
        quick=args.quick,
    )
    size = int(round(args.image_size * 256 / 224))
    if args.data == "video":
        copies = write_videos(work / "raw", videos=args.videos, val_videos=12, poses=args.poses, repeats=args.repeats)
        shape = (
            f"video: {args.videos} training videos x {args.poses} poses x {args.repeats} frames ({copies} "
            f"near-copies), 12 validation videos x {3 * args.poses} poses x 1 frame"
        )
    else:
        generate(work / "raw", videos=args.videos, frames=args.frames, seed=0)
        shape = f"demo: {args.videos} videos x {args.frames} frames"
    report = clean(CleanConfig(root=work / "raw", out=work / "clean", workers=2, quiet=True)).report
    manifest = pl.read_parquet(work / "clean" / "manifest.parquet")
    train_rows = manifest.filter(pl.col("split") == "train").height
    print(
        f"data {shape}; {train_rows} training samples, validation "
        f"{manifest.filter(pl.col('split') == 'val').height}; {args.image_size} px, {args.epochs} epochs, "
        f"{args.seeds} seed(s); {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    near = report["near_duplicates"]
    print(
        "near-duplicate training frames (same video and label): "
        + ", ".join(
            f"{v['near_duplicates']} at distance <= {d} ({v['epoch_share_saved']:.1%})"
            for d, v in near["by_distance"].items()
        )
    )
    if args.data == "video":  # the copies are known: frames after the first of each pose
        frames = manifest.filter(pl.col("split") == "train").with_columns(
            copy=pl.col("image_path").str.extract(r"frame_(\d+)\.jpg$").cast(pl.Int64) % args.repeats != 0,
            flagged=pl.col("warnings").list.contains("image.near_duplicate"),
        )
        hit = frames.filter(pl.col("copy") & pl.col("flagged")).height
        flagged = max(frames.filter(pl.col("flagged")).height, 1)
        print(
            f"rule image.near_duplicate (default distance 4) on the known copies: precision {hit / flagged:.3f}, "
            f"recall {hit / max(frames.filter(pl.col('copy')).height, 1):.3f}"
        )

    full_shards = make_shards(work / "clean", work / "shards_full", size=size)
    runs: dict[str, list[dict]] = {name: [] for name in ARMS}
    runs["full"].append(train(full_shards, work / "run_full_0", args, seed=0))
    start = time.perf_counter()
    scores = write_scores([work / "run_full_0"], work / "scores.parquet")
    print(
        f"scores of {scores.height} samples in {time.perf_counter() - start:.1f} s (EL2N at epoch "
        f"{scores['el2n_epoch'].min()})"
    )
    keep = {"keep": args.keep_share}
    scored = {"select": work / "scores.parquet", "by": "el2n", **keep}
    diets = {
        "random": make_shards(
            work / "clean", work / "shards_random", size=size, by="random", near_duplicates_last=False, **keep
        ),
        "dedup": make_shards(
            work / "clean", work / "shards_dedup", size=size, by="random", near_duplicates_last=True, **keep
        ),
        "score": make_shards(work / "clean", work / "shards_score", size=size, near_duplicates_last=True, **scored),
        "score_only": make_shards(
            work / "clean", work / "shards_score_only", size=size, near_duplicates_last=False, **scored
        ),
    }
    for seed in range(args.seeds):
        if seed:
            runs["full"].append(train(full_shards, work / f"run_full_{seed}", args, seed=seed))
        for name, shards in diets.items():
            runs[name].append(train(shards, work / f"run_{name}_{seed}", args, seed=seed))

    print(
        f"\n{'arm':<11} {'samples':>7} {'last epoch (min-max)':>22} {f'last {args.last_k} (min-max)':>22} {'steps':>6} "
        f"{'train s':>8}   last-{args.last_k} per seed"
    )
    arms, mean = {}, {}
    for name, rs in runs.items():
        shards = full_shards if name == "full" else diets[name]
        written = json.loads((shards / "dataset.json").read_text(encoding="utf-8"))["counts"]["train"]["written"]
        last, last_k = [r["accuracy"] for r in rs], [r["last_k"] for r in rs]
        mean[name] = float(np.mean(last_k))
        arms[name] = {
            "samples": written,
            "seeds": rs,
            "last_epoch_mean": float(np.mean(last)),
            "last_k_mean": mean[name],
            "last_k_min": min(last_k),
            "last_k_max": max(last_k),
        }
        print(
            f"{name:<11} {written:>7} {np.mean(last):>8.4f} ({min(last):.3f}-{max(last):.3f}) {mean[name]:>8.4f} "
            f"({min(last_k):.3f}-{max(last_k):.3f}) {rs[0]['steps']:>6} {np.mean([r['seconds'] for r in rs]):>8.0f}   "
            + " ".join(f"{v:.4f}" for v in last_k)
        )
    wins = sum(
        s > d for s, d in zip((r["last_k"] for r in runs["score"]), (r["last_k"] for r in runs["dedup"]), strict=True)
    )
    print(f"score beats dedup on {wins} of {args.seeds} seeds (last-{args.last_k} accuracy)")
    rec.ratio("diet_score_vs_dedup", mean["score"] / mean["dedup"])
    rec.ratio("diet_score_vs_random", mean["score"] / mean["random"])
    rec.ratio("diet_dedup_vs_random", mean["dedup"] / mean["random"])
    rec.ratio("diet_vs_full", mean["score"] / mean["full"])
    rec.finish(data=shape, training_samples=train_rows, near_duplicates=near, arms=arms, score_beats_dedup_seeds=wins)
    return 0


ARMS = ("full", "random", "dedup", "score", "score_only")


if __name__ == "__main__":
    sys.exit(main())
