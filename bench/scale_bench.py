"""How ``ingest clean``, ``shards build`` and ``train audit`` grow with the number of records, and what that
says about the users' 2 M frames on an 8-core workstation.

Input, made once for the largest size and reused (the smaller sizes are its first N rows): videos of
35 small JPEG frames (32-64 px, one colour pattern per video, noise per frame, so near-duplicate
frames occur as in 200 ms video cuts), one box per frame, 6 classes, and the dirt the users report
in small doses (1 % boxes a few pixels past the edge: clipped; 0.5 % rows naming a missing image:
dropped). The layout is a CSV table (``image_path,label,x,y,w,h,video``), one table per size beside
one shared ``img/`` folder (``--format table --annotations table_N.csv``).

For each N, three stages run as subprocesses of the command line (``python -m pawpipe.ingest|shards|train``),
one after the other:

1. ``ingest clean ROOT --format table --annotations table_N.csv --workers W``;
2. ``shards build CLEAN --workers W`` (the default crop and size);
3. ``train audit RUN --manifest CLEAN --no-predict`` on **generated** training dynamics: the bench
   writes a run folder (``config.json`` and ``run.json`` through ``train.fit.runrecord.RunRecord``,
   ``dynamics/`` parts through the contract's writer ``train.fit.dynamics.EpochDynamics``,
   ``metrics.jsonl`` with one evaluation per epoch) for the shards' training samples, ``--epochs``
   epochs (30: the users' runs), 5 % of the labels planted wrong, so the audit's cost is measured
   without training. ``--no-predict`` leaves out the eval-mode pass of the last checkpoint over the
   training split (a model forward per training image) and with it the neighbour view
   (``train.audit.neighbours``: brute-force N x N similarities, quadratic by design, docs/audit.md)
   and the group verdicts that need it; what is measured is reading the dynamics epoch by epoch,
   AUM, forgetting, confident learning on the mean training-time probabilities, the verdicts, the
   files and the HTML report with its gallery.

Per stage and N: wall seconds; CPU seconds of the main process and of its worker processes (from
``/proc/PID/stat``: the workers' time is the main process's ``cutime + cstime`` once the pool has
reaped them); **peak RSS** as ``/usr/bin/time`` reports it (``%M``: from its ``wait4`` of the stage's
process, exact: the kernel's high-water mark of the largest process of the stage's tree, the main
process here; ``time`` is the launcher because a child forked from the bench itself would inherit
the bench's own high-water mark through the exec); and the sampled peak PSS of the whole process
tree and of its largest worker (``/proc/PID/smaps_rollup`` every 0.2 s: a sampled figure, it can
miss a peak shorter than that).

From the three N: the growth exponent of each stage's wall time, CPU seconds (the stage's process
and its workers) and peak RSS (least squares of log y on log N), and the local exponent between the
two largest N. A stage whose CPU exponent (fitted or local) passes 1.15 is flagged super-linear;
one whose wall-time exponent alone passes it is flagged "wall only": on a shared machine the wall
time follows the other jobs' load, the CPU seconds much less (rerun that stage before believing it).

Extrapolation to 2 M records on an 8-core workstation, **assuming the CPU work of the worker
processes divides over the 8 cores and the main process's does not** (its polars threads and its
overlap with the workers are counted as serial, so it errs slow), that the cores are as fast as
this machine's and idle, and that the frames are read without waiting on storage (here they sit in
the page cache): ``t8(N) = cpu_main(N) + cpu_workers(N) / 8``. Each t8 is fitted in N by a power law
and by a line (``a + b N``), and the larger of the two at 2 M is taken (a power law fitted where a
fixed start-up cost still weighs bends too low). A bound for a machine as busy as this one comes
from the wall time instead: ``wall(N) - cpu_workers(N) / W + cpu_workers(N) / 8`` (the pool phase
here took longer than ``cpu_workers / W`` because other jobs held the cores). The ingest estimate
adds what real frames cost the image check beyond these small ones: ``probe_one`` on 1280x720 to
1920x1080 frames (``ingest_bench.make_images``) against the bench's own, CPU seconds in this
process, times 2 M / 8. Shards are not corrected so (their time at 2 M holds for small frames
only; no target is set for it). Peak memory at 2 M on 8 cores: the stage's peak RSS (the larger of
the power law and the line) plus 8 times its largest worker's PSS. ``--workers-check`` also runs
ingest and shards with ``--workers 1`` at one N: what ``--workers`` buys here.

    python bench/scale_bench.py [--quick] [--sizes 10000,40000,160000] [--workers 2] [--epochs 30]
                                [--keep DIR] [--plot docs/scale.png]

``--quick``: N = 1000, 2000, 4000 and 5 epochs (a minute or two on 2 cores; the exponents there
are start-up dominated). Saved to ``bench/results/scale-<date>-<commit>[-quick].json``.

The last lines are ``RATIO <name> <value>`` (higher is better):

* ``scale_<stage>_exponent_inverse``: 1 / the growth exponent of the stage's wall time, fitted over
  all sizes (1.0: linear; below 0.87: the wall time grew faster than N^1.15), for ``ingest``,
  ``shards`` and ``audit``; an exponent below 0.1 (start-up dominated, as at ``--quick`` sizes)
  counts as 0.1;
* ``scale_ingest_2m_target``: 15 min / the extrapolated ``ingest clean`` time at 2 M frames on 8 cores
  (>= 1: the target is met);
* ``scale_<stage>_rss_2m_target``: 8 GB / the stage's extrapolated peak memory at 2 M on 8 cores
  (>= 1: met).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from result_file import Recorder  # noqa: E402

STAGES = ("ingest", "shards", "audit")
OUT_DIRS = {"ingest": "clean", "shards": "shards", "audit": "audit"}  # each stage's output folder: <name>_<N>
TARGET_N = 2_000_000
TARGET_CORES = 8
INGEST_TARGET_S = 15 * 60
RSS_TARGET = 8 * 2**30
SUPERLINEAR = 1.15
MIN_EXPONENT = 0.1  # a flatter (or, in noise, negative) exponent is start-up dominated: its RATIO counts it as 0.1
FRAMES = 35  # per video, as the users' label files
VOCABULARY = ("happy", "calm", "angry", "scared", "sad", "alert")
SIZES_PX = ((48, 48), (64, 48), (48, 64), (56, 40), (40, 56), (64, 64), (32, 32), (32, 48))
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY = 0.2
TIME = "/usr/bin/time"  # GNU time: the stage's peak RSS (%M) and CPU seconds, from its own wait4


# ---------------------------------------------------------------- input


def _video_images(args: tuple[str, int, int, int]) -> int:
    """Write the frames of videos [lo, hi) (a worker's share; seeded per video, so any split gives the same bytes)."""
    root, lo, hi, seed = args
    for v in range(lo, hi):
        rng = np.random.default_rng([seed, v])
        w, h = SIZES_PX[v % len(SIZES_PX)]
        base = np.asarray(
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
                (w + 8, h + 8), Image.Resampling.BICUBIC
            ),
            dtype=np.int16,
        )
        folder = Path(root) / "img" / f"v{v // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(FRAMES):
            dx, dy = (int(d) for d in rng.integers(0, 8, 2))  # a small pan
            px = base[dy : dy + h, dx : dx + w] + rng.integers(-10, 10, (h, w, 3))
            Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(
                folder / f"v{v:06d}_frame{f:02d}.jpg", quality=85
            )
    return hi - lo


def make_images(root: Path, videos: int, *, workers: int, seed: int) -> float:
    """The frames of ``videos`` videos under ``root/img`` (kept when a marker says they are there); seconds taken."""
    marker = root / "img" / "made.json"
    made = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
    if made.get("seed") == seed and made.get("videos", 0) >= videos:
        return 0.0
    start = time.perf_counter()
    step = 50
    jobs = [(str(root), lo, min(lo + step, videos), seed) for lo in range(0, videos, step)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(_video_images, jobs):
            pass
    marker.write_text(json.dumps({"videos": videos, "seed": seed}), encoding="utf-8")
    return time.perf_counter() - start


def write_table(root: Path, n: int, *, seed: int) -> str:
    """``table_<n>.csv``: the first ``n`` frames' rows (boxes, labels per video, the planted dirt)."""
    name = f"table_{n}.csv"
    rng = np.random.default_rng([seed, 1])
    rows = FRAMES * math.ceil(TARGET_N / FRAMES)  # draws independent of n: table_N is a prefix of any larger one
    idx = np.arange(n)
    video, frame = idx // FRAMES, idx % FRAMES
    wh = np.array(SIZES_PX)[video % len(SIZES_PX)]
    width, height = wh[:, 0], wh[:, 1]
    u = rng.random(rows)[:n]
    x = (rng.random(rows)[:n] * width / 4).round(1)
    y = (rng.random(rows)[:n] * height / 4).round(1)
    w = (width / 2 + rng.random(rows)[:n] * width / 4).round(1)
    h = (height / 2 + rng.random(rows)[:n] * height / 4).round(1)
    w = np.where(u < 0.01, width - x + 1 + (u * 500).round(), w)  # 1 % past the right edge by 1-6 px: clipped
    label = np.array(VOCABULARY)[
        np.random.default_rng([seed, 2]).integers(0, len(VOCABULARY), rows // FRAMES + 1)[video]
    ]
    path = np.char.add(
        np.char.add(np.char.add("img/v", np.char.zfill((video // 1000).astype(str), 3)), "/v"),
        np.char.add(np.char.zfill(video.astype(str), 6), np.char.add("_frame", np.char.zfill(frame.astype(str), 2))),
    )
    path = np.where((u >= 0.01) & (u < 0.015), np.char.add(path, "_missing"), path)  # 0.5 % name no file: dropped
    pl.DataFrame(
        {
            "image_path": np.char.add(path, ".jpg"),
            "label": label,
            "x": x,
            "y": y,
            "w": w,
            "h": h,
            "video": np.char.add("v", video.astype(str)),
        }
    ).write_csv(root / name)
    return name


def write_run(run_dir: Path, clean: Path, shards: Path, *, epochs: int, seed: int) -> dict:
    """A training run folder as ``train run`` leaves it, for the shards' training samples, with generated dynamics.

    The model's story per sample: the logit of the class the image shows rises over the epochs (a
    sample's own pace); 5 % of the labels are planted wrong, their image showing another class, so
    the margin of the given label stays negative for most of them (with a late memorisation in part).
    """
    import torch

    from pawpipe.train.config import load_train_config
    from pawpipe.train.fit.dynamics import EpochDynamics
    from pawpipe.train.fit.runrecord import RunRecord

    start = time.perf_counter()
    labels = json.loads((clean / "labels.json").read_text(encoding="utf-8"))
    vocab, k = labels["vocabulary"], len(labels["vocabulary"])
    train = pl.read_parquet(shards / "train" / "samples.parquet", columns=["sample_id", "label_id"]).sort("sample_id")
    val = shards / "val" / "samples.parquet"
    val_n = pl.read_parquet(val, columns=["sample_id"]).height if val.is_file() else 0
    n = train.height
    rng = np.random.default_rng([seed, 3])
    ids = train.get_column("sample_id").to_list()
    given = train.get_column("label_id").to_numpy().astype(np.int64)
    flipped = rng.random(n) < 0.05
    shown = np.where(flipped, (given + rng.integers(1, k, n)) % k, given)
    pace = rng.uniform(0.5, 2.0, n)
    memorise = flipped & (rng.random(n) < 0.3)
    shutil.rmtree(run_dir, ignore_errors=True)
    record = RunRecord(run_dir, tensorboard=False)
    cfg = load_train_config(values={"data.shards": str(shards), "schedule.epochs": epochs, "seed": seed})
    batch = 4096
    steps = math.ceil(n / batch)
    record.write_start(
        cfg.model_dump(mode="json"),
        seed=seed,
        device="cpu (dynamics generated by bench/scale_bench.py, no training)",
        extra={"vocabulary": vocab, "batches_per_epoch": steps, "steps_per_epoch": steps, "generated": True},
    )
    rows = np.arange(n)
    for epoch in range(epochs):
        progress = (epoch + 1) / epochs
        order = rng.permutation(n)
        z = rng.normal(0.0, 1.0, (n, k)).astype(np.float32)
        z[rows, shown] += (4.0 * progress * pace).astype(np.float32)
        late = memorise & (progress > 0.6)
        z[rows[late], given[late]] += 6.0 * (progress - 0.6)
        dyn = EpochDynamics(run_dir / "dynamics", epoch)
        for b in range(steps):
            sel = order[b * batch : (b + 1) * batch]
            logits = torch.from_numpy(z[sel])
            label = torch.from_numpy(given[sel])
            probs = logits.softmax(dim=1)
            own = logits.gather(1, label[:, None])[:, 0]
            other = logits.scatter(1, label[:, None], -torch.inf).max(dim=1).values
            dyn.add(
                [ids[i] for i in sel],
                step=epoch * steps + b,
                labels=label,
                preds=logits.argmax(dim=1),
                loss=-probs.gather(1, label[:, None])[:, 0].clamp_min(1e-12).log(),
                margin=own - other,
                probs=probs,
            )
        dyn.close(steps)
        support = max(1, val_n // k)
        record.log(
            "train",
            step=(epoch + 1) * steps - 1,
            epoch=epoch,
            train_loss=2.0 - 1.5 * progress,
            train_accuracy=0.3 + 0.6 * progress,
            lr=1e-3 * (1 - progress) + 1e-5,
        )
        record.log(
            "eval",
            step=(epoch + 1) * steps - 1,
            epoch=epoch,
            end_of_epoch=True,
            count=support * k,
            loss=1.5 - progress,
            accuracy=0.5 + 0.4 * progress,
            macro_f1=0.5 + 0.4 * progress,
            per_class={name: {"support": support} for name in vocab},
        )
    record.close()
    size = sum(p.stat().st_size for p in (run_dir / "dynamics").iterdir())
    return {
        "train_samples": n,
        "epochs": epochs,
        "rows": n * epochs,
        "planted_wrong": int(flipped.sum()),
        "dynamics_bytes": size,
        "seconds": round(time.perf_counter() - start, 1),
    }


# ---------------------------------------------------------------- measuring one stage


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc (no psutil)."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):  # gone meanwhile
        pass
    return 0


def _cpu_ticks(pid: int) -> tuple[int, int] | None:
    """(own utime + stime, reaped children's cutime + cstime) of ``pid``, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


class TreeSampler(threading.Thread):
    """Every ``SAMPLE_EVERY`` s: the PSS of the stage's process tree (the child of the ``time`` launcher
    ``pid``), of its main process and of its largest worker, and the main process's CPU ticks."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.main: int | None = None
        self.stop = threading.Event()
        self.peak_tree = self.peak_main = self.peak_worker = 0
        self.max_workers = 0
        self.ticks: tuple[int, int] | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            tree = _children()
            if self.main is None and tree.get(self.pid):
                self.main = tree[self.pid][0]
            if self.main is not None:
                todo, members = [self.main], []
                while todo:
                    pid = todo.pop()
                    members.append(pid)
                    todo += tree.get(pid, [])
                pss = {pid: _pss(pid) for pid in members}
                ticks = _cpu_ticks(self.main)
                if ticks is not None:
                    self.ticks = ticks
                workers = [v for pid, v in pss.items() if pid != self.main]
                self.peak_tree = max(self.peak_tree, sum(pss.values()))
                self.peak_main = max(self.peak_main, pss.get(self.main, 0))
                self.peak_worker = max([self.peak_worker, *workers])
                self.max_workers = max(self.max_workers, sum(v > 0 for v in workers))
            self.stop.wait(SAMPLE_EVERY)


def run_stage(cmd: list[str], log: Path) -> dict:
    """Run one stage's command line under ``/usr/bin/time``; its wall time, CPU split, exact peak RSS and sampled PSS.

    The launcher matters for the peak RSS: a process forked from this one (large, once torch is
    imported) inherits its high-water mark through the exec, so ``wait4`` on a direct child reports
    at least this process's peak; ``time`` is small, and what it forks starts small.
    """
    stats = log.with_suffix(".time")
    with open(log, "w", encoding="utf-8") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "-f", "%M %U %S", "-o", str(stats), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )
        sampler = TreeSampler(proc.pid)
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}; the end of {log}:\n" + "\n".join(tail))
    max_kb, user, system = stats.read_text(encoding="ascii").split()[-3:]
    cpu_total = float(user) + float(system)  # the stage's process and every descendant it reaped
    cpu_workers = min(cpu_total, (sampler.ticks[1] / TICK) if sampler.ticks else 0.0)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu_total, 2),
        "cpu_main_s": round(cpu_total - cpu_workers, 2),
        "cpu_workers_s": round(cpu_workers, 2),
        "peak_rss": int(max_kb) * 1024,
        "peak_tree_pss": sampler.peak_tree,
        "peak_main_pss": sampler.peak_main,
        "peak_worker_pss": sampler.peak_worker,
        "workers_seen": sampler.max_workers,
    }


# ---------------------------------------------------------------- calibration: real frames


def frame_calibration(work: Path, root: Path, tiny: list[str], *, frames: int) -> dict:
    """CPU seconds per image of ``ingest.probe.probe_one`` (one core) on real-size frames and on the bench's own."""
    from ingest_bench import make_images as make_frames

    from pawpipe.ingest.probe import probe_one

    real = work / "frames"
    real.mkdir(exist_ok=True)
    names = make_frames(real, frames, np.random.default_rng(0))

    def per_image(folder: Path, rels: list[str]) -> float:
        best = math.inf
        for _ in range(3):  # CPU seconds, best of 3: the least disturbed by the other jobs on the machine
            start = time.process_time()
            for rel in rels:
                assert probe_one(str(folder), rel)["status"] == "ok"
            best = min(best, (time.process_time() - start) / len(rels))
        return best

    real_s, tiny_s = per_image(real, names), per_image(root, tiny)
    return {
        "real_frames": frames,
        "real_sizes": "1280x720, 720x1280, 1440x1440, 1920x1080",
        "probe_real_s": real_s,
        "probe_tiny_s": tiny_s,
        "extra_per_frame_s": max(0.0, real_s - tiny_s),
    }


# ---------------------------------------------------------------- fits


def power_fit(n: list[int], y: list[float]) -> tuple[float, float]:
    """(exponent, log coefficient) of y = c N^a, least squares in log-log."""
    a, b = np.polyfit(np.log(n), np.log(y), 1)
    return float(a), float(b)


def line_fit(n: list[int], y: list[float]) -> tuple[float, float]:
    """(slope, intercept) of y = a + b N."""
    b, a = np.polyfit(np.asarray(n, dtype=float), np.asarray(y, dtype=float), 1)
    return float(b), float(a)


def extrapolate(n: list[int], y: list[float], at: int) -> dict:
    a, c = power_fit(n, y)
    slope, intercept = line_fit(n, y)
    power, line = math.exp(c) * at**a, intercept + slope * at
    return {
        "exponent": round(a, 4),
        "local_exponent": round(math.log(y[-1] / y[-2]) / math.log(n[-1] / n[-2]), 4),
        "power_at": power,
        "line_at": line,
        "per_record": slope,
        "fixed": intercept,
        "at": max(power, line),
    }


def superlinear(fit: dict) -> bool:
    return fit["exponent"] > SUPERLINEAR or fit["local_exponent"] > SUPERLINEAR


def idle_8_cores(rows: list[dict]) -> list[float]:
    """Per N, seconds on 8 idle cores: the main process's CPU serial, the workers' divided by 8."""
    return [r["cpu_main_s"] + r["cpu_workers_s"] / TARGET_CORES for r in rows]


def busy_8_cores(rows: list[dict], workers: int) -> list[float]:
    """Per N, seconds on 8 cores as busy as this machine: the wall time, the workers' share as if 8 ran it."""
    return [r["wall_s"] - r["cpu_workers_s"] / workers + r["cpu_workers_s"] / TARGET_CORES for r in rows]


def analyse(sizes: list[int], results: dict, workers: int, calibration: dict | None) -> dict:
    out = {}
    for stage in STAGES:
        rows = [results[n][stage] for n in sizes]
        wall = [r["wall_s"] for r in rows]
        rss = [r["peak_rss"] for r in rows]
        time_fit, rss_fit = extrapolate(sizes, wall, TARGET_N), extrapolate(sizes, rss, TARGET_N)
        cpu_fit = extrapolate(sizes, [r["cpu_s"] for r in rows], TARGET_N)
        t8_fit, busy_fit = (
            extrapolate(sizes, idle_8_cores(rows), TARGET_N),
            extrapolate(sizes, busy_8_cores(rows, workers), TARGET_N),
        )
        frames = (
            TARGET_N * calibration["extra_per_frame_s"] / TARGET_CORES if stage == "ingest" and calibration else 0.0
        )
        seconds_2m, busy_2m = t8_fit["at"] + frames, busy_fit["at"] + frames
        worker_pss = max(r["peak_worker_pss"] for r in rows)
        memory_2m = rss_fit["at"] + (TARGET_CORES * worker_pss if any(r["workers_seen"] for r in rows) else 0)
        out[stage] = {
            "time": time_fit,
            "time_8_cores": t8_fit,
            "time_8_cores_busy": busy_fit,
            "real_frames_s": round(frames, 1),
            "seconds_2m_8_cores": round(seconds_2m, 1),
            "seconds_2m_8_cores_busy": round(busy_2m, 1),
            "rss": rss_fit,
            "peak_memory_2m_8_cores": round(memory_2m),
            "worker_pss": worker_pss,
            "cpu": cpu_fit,
            "superlinear": superlinear(cpu_fit),
            "superlinear_wall_only": superlinear(time_fit) and not superlinear(cpu_fit),
        }
    return out


# ---------------------------------------------------------------- plot


def _curve(fit: dict, grid: np.ndarray, n: list[int], y: list[float]) -> np.ndarray:
    """The extrapolating curve of ``extrapolate``: the larger of the power law and the line."""
    a, c = power_fit(n, y)
    return np.maximum(np.exp(c) * grid**a, fit["fixed"] + fit["per_record"] * grid)


def plot(path: Path, sizes: list[int], results: dict, analysis: dict, workers: int) -> None:
    """Time and memory against N, log-log: measured points, the extrapolating fits to 2 M, the 2 M estimates,
    the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    colours = {"ingest": "#1f77b4", "shards": "#2ca02c", "audit": "#d62728"}
    grid = np.geomspace(sizes[0], TARGET_N, 60)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 7), layout="constrained")
    for stage in STAGES:
        c, a = colours[stage], analysis[stage]
        rows = [results[n][stage] for n in sizes]
        wall = [r["wall_s"] for r in rows]
        t8 = idle_8_cores(rows)
        ax_t.plot(
            sizes,
            wall,
            "o",
            color=c,
            label=f"{stage}: measured wall, {workers} workers (N^{a['time']['exponent']:.2f})",
        )
        ax_t.plot(
            sizes,
            t8,
            "o",
            mfc="none",
            color=c,
            label=f"{stage}: as on {TARGET_CORES} idle cores (CPU seconds), fitted (dashed)",
        )
        ax_t.plot(grid, _curve(a["time_8_cores"], grid, sizes, t8), "--", color=c, lw=1)
        ax_t.plot(
            [TARGET_N],
            [a["seconds_2m_8_cores"]],
            "*",
            color=c,
            ms=15,
            label=f"{stage}: 2 M frames, 8 cores: {a['seconds_2m_8_cores'] / 60:.1f} min"
            + (" (+ real-frame image check)" if stage == "ingest" else ""),
        )
        rss = [r["peak_rss"] / 2**30 for r in rows]
        ax_m.plot(sizes, rss, "o", color=c, label=f"{stage}: peak RSS (N^{a['rss']['exponent']:.2f}), fit dashed")
        ax_m.plot(
            grid,
            _curve({k: v / 2**30 for k, v in a["rss"].items() if k in ("fixed", "per_record")}, grid, sizes, rss),
            "--",
            color=c,
            lw=1,
        )
        ax_m.plot(
            [TARGET_N],
            [a["peak_memory_2m_8_cores"] / 2**30],
            "*",
            color=c,
            ms=15,
            label=f"{stage}: 2 M, 8 cores: {a['peak_memory_2m_8_cores'] / 2**30:.1f} GB"
            + (" (+ 8 workers)" if a["worker_pss"] and any(r["workers_seen"] for r in rows) else ""),
        )
    ax_t.axhline(INGEST_TARGET_S, color="grey", ls=":", lw=1)
    ax_t.text(TARGET_N / 40, INGEST_TARGET_S * 1.08, "ingest target: 15 min", color="grey", fontsize=8)
    ax_m.axhline(RSS_TARGET / 2**30, color="grey", ls=":", lw=1)
    ax_m.text(TARGET_N / 40, RSS_TARGET / 2**30 * 1.08, "target: 8 GB per stage", color="grey", fontsize=8)
    for ax, title, unit in ((ax_t, "wall time", "seconds"), (ax_m, "peak memory of a stage", "GB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.axvline(TARGET_N, color="grey", lw=0.5)
        ax.set_xlabel("records N (log)")
        ax.set_ylabel(f"{unit} (log)")
        ax.set_title(f"{title} (dashed: the larger of the power-law and the straight-line fit)", fontsize=9)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.12))
    fig.suptitle(
        "bench/scale_bench.py: measured on a shared 2-core machine; stars: extrapolated to 2 M frames on 8 cores",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


# ---------------------------------------------------------------- main


def commands(root: Path, work: Path, n: int, table: str, workers: int, tag: str = "") -> dict[str, list[str]]:
    py = sys.executable
    clean, shards = work / f"clean_{n}{tag}", work / f"shards_{n}{tag}"
    return {
        "ingest": [
            py,
            "-m",
            "pawpipe.ingest",
            "clean",
            str(root),
            "--out",
            str(clean),
            "--format",
            "table",
            "--annotations",
            table,
            "--workers",
            str(workers),
            "--quiet",
        ],
        "shards": [
            py,
            "-m",
            "pawpipe.shards",
            "build",
            str(clean),
            "--out",
            str(shards),
            "--workers",
            str(workers),
            "--quiet",
        ],
        "audit": [
            py,
            "-m",
            "pawpipe.train",
            "audit",
            str(work / f"run_{n}"),
            "--manifest",
            str(clean),
            "--out",
            str(work / f"audit_{n}"),
            "--no-predict",
        ],
    }


def fmt_bytes(v: float) -> str:
    return f"{v / 2**30:.2f} GB" if v >= 2**30 else f"{v / 2**20:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="N = 1000, 2000, 4000 and 5 epochs: a minute or two on 2 cores"
    )
    ap.add_argument("--sizes", help="comma-separated N (default 10000,40000,160000)")
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="--workers of ingest and shards (all cores)"
    )
    ap.add_argument("--epochs", type=int, help="epochs of generated dynamics (30; --quick 5)")
    ap.add_argument(
        "--workers-check",
        type=int,
        metavar="N",
        help="also run ingest and shards with --workers 1 at this N (default: the second size; 0: not)",
    )
    ap.add_argument(
        "--calibration-frames", type=int, default=24, help="real-size frames timed for the image-check correction"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (reuses its images)")
    ap.add_argument("--plot", type=Path, help="the PNG to draw (default docs/scale.png; --quick: none)")
    args = ap.parse_args()
    sizes = sorted(
        int(s) for s in (args.sizes or ("1000,2000,4000" if args.quick else "10000,40000,160000")).split(",")
    )
    if len(sizes) < 3:
        ap.error("--sizes: expected at least 3 sizes for the fits")
    epochs = args.epochs or (5 if args.quick else 30)
    check_n = sizes[1] if args.workers_check is None else args.workers_check
    plot_path = args.plot or (None if args.quick else Path(__file__).resolve().parents[1] / "docs" / "scale.png")
    rec = Recorder(
        "scale",
        quick=args.quick,
        seed=args.seed,
        args={**vars(args), "sizes": sizes, "epochs": epochs, "workers_check": check_n},
    )

    work = args.keep or Path(tempfile.mkdtemp(prefix="scale_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "data"
    root.mkdir(exist_ok=True)
    try:
        videos = math.ceil(sizes[-1] / FRAMES)
        made_s = make_images(root, videos, workers=args.workers, seed=args.seed)
        print(
            f"input: {videos * FRAMES:,} frames of {videos:,} videos under {root} ({made_s:.0f} s to make; 0: reused)",
            flush=True,
        )
        results: dict = {}
        for n in sizes:
            table = write_table(root, n, seed=args.seed)
            cmd = commands(root, work, n, table, args.workers)
            results[n] = {}
            for stage in STAGES:
                if stage == "audit":
                    results[n]["generated_run"] = write_run(
                        work / f"run_{n}", work / f"clean_{n}", work / f"shards_{n}", epochs=epochs, seed=args.seed
                    )
                shutil.rmtree(
                    work / f"{OUT_DIRS[stage]}_{n}", ignore_errors=True
                )  # a fresh output: no resume, no refusal
                r = results[n][stage] = run_stage(cmd[stage], work / f"{stage}_{n}.log")
                print(
                    f"N={n:>9,} {stage:<7} {r['wall_s']:>8.1f} s  cpu main {r['cpu_main_s']:>7.1f} s, workers "
                    f"{r['cpu_workers_s']:>7.1f} s  peak RSS {fmt_bytes(r['peak_rss']):>8}  tree PSS "
                    f"{fmt_bytes(r['peak_tree_pss']):>8}  largest worker {fmt_bytes(r['peak_worker_pss'])}",
                    flush=True,
                )
            report = json.loads((work / f"clean_{n}" / "report.json").read_text(encoding="utf-8"))
            results[n]["records"] = {
                "in": report["records_in"],
                "clean": report["clean"],
                "quarantined": report["quarantined"],
            }
            results[n]["audit_verdicts"] = json.loads((work / f"audit_{n}" / "audit.json").read_text(encoding="utf-8"))[
                "verdicts"
            ]
        workers_check = None
        if check_n and args.workers > 1:
            table = write_table(root, check_n, seed=args.seed)
            cmd = commands(root, work, check_n, table, 1, tag="_w1")
            workers_check = {"n": check_n, "workers": args.workers}
            for stage in ("ingest", "shards"):
                shutil.rmtree(work / f"{OUT_DIRS[stage]}_{check_n}_w1", ignore_errors=True)
                one = run_stage(cmd[stage], work / f"{stage}_{check_n}_w1.log")
                many = results[check_n][stage] if check_n in results else None
                workers_check[stage] = {"workers_1": one, f"workers_{args.workers}": many}
                if many:
                    w = args.workers
                    p = (one["wall_s"] - many["wall_s"]) * w / (w - 1)  # Amdahl: t1 = s + p, tW = s + p / W
                    workers_check[stage]["speedup"] = round(one["wall_s"] / many["wall_s"], 3)
                    workers_check[stage]["parallel_share_wall"] = round(p / one["wall_s"], 3)
                    workers_check[stage]["parallel_share_cpu"] = round(
                        many["cpu_workers_s"] / max(many["cpu_s"], 1e-9), 3
                    )
                    print(
                        f"--workers 1 vs {w} at N={check_n:,}, {stage}: {one['wall_s']:.1f} s vs "
                        f"{many['wall_s']:.1f} s ({one['wall_s'] / many['wall_s']:.2f}x); parallel share "
                        f"{p / one['wall_s']:.0%} by wall, {workers_check[stage]['parallel_share_cpu']:.0%} of CPU "
                        "in workers",
                        flush=True,
                    )
        tiny = [f"img/v000/v{v:06d}_frame00.jpg" for v in range(min(args.calibration_frames, videos))]
        calibration = (
            frame_calibration(work, root, tiny, frames=args.calibration_frames) if args.calibration_frames else None
        )
        if calibration:
            print(
                f"image check, 1 core: {calibration['probe_real_s'] * 1e3:.2f} ms per real frame, "
                f"{calibration['probe_tiny_s'] * 1e3:.2f} ms per bench image",
                flush=True,
            )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    analysis = analyse(sizes, results, args.workers, calibration)
    print(f"\n{'N':>9} {'stage':<7} {'seconds':>9} {'peak RSS':>10} {'tree PSS':>10}")
    for n in sizes:
        for stage in STAGES:
            r = results[n][stage]
            print(
                f"{n:>9,} {stage:<7} {r['wall_s']:>9.1f} {fmt_bytes(r['peak_rss']):>10} "
                f"{fmt_bytes(r['peak_tree_pss']):>10}"
            )
    print(
        f"\nat {TARGET_N:,} records on {TARGET_CORES} idle cores (the workers' CPU seconds divided over the cores, the "
        "main process's serial; in brackets: from the wall time of this busy machine):"
    )
    for stage in STAGES:
        a = analysis[stage]
        flag = (
            "  SUPER-LINEAR"
            if a["superlinear"]
            else ("  super-linear in wall time only" if a["superlinear_wall_only"] else "")
        )
        print(
            f"  {stage:<7} wall N^{a['time']['exponent']:.2f} (local {a['time']['local_exponent']:.2f}), "
            f"CPU N^{a['cpu']['exponent']:.2f} (local {a['cpu']['local_exponent']:.2f}){flag}, "
            f"RSS N^{a['rss']['exponent']:.2f} ({a['rss']['per_record']:.0f} B per record): "
            f"{a['seconds_2m_8_cores'] / 60:.1f} min ({a['seconds_2m_8_cores_busy'] / 60:.1f}), "
            f"{fmt_bytes(a['peak_memory_2m_8_cores'])}"
        )
    if args.quick:  # no verdicts: a few MB of noise over 3000 records is GB at 2 M
        print(
            "  (--quick: these sizes are start-up dominated; the exponents and extrapolations are no evidence, no "
            "verdicts)"
        )
    else:
        ingest_min = analysis["ingest"]["seconds_2m_8_cores"] / 60
        frames_min = analysis["ingest"]["real_frames_s"] / 60
        print(
            f"  ingest <= 15 min: {'met' if ingest_min <= 15 else 'NOT met'} ({ingest_min:.1f} min, of which "
            f"{frames_min:.1f} min the image check's extra cost on real-size frames)"
        )
        for stage in STAGES:
            mem = analysis[stage]["peak_memory_2m_8_cores"]
            print(f"  {stage} peak memory <= 8 GB: {'met' if mem <= RSS_TARGET else 'NOT met'} ({fmt_bytes(mem)})")
    if plot_path is not None:
        plot(plot_path, sizes, results, analysis, args.workers)
        print(f"drew {plot_path}")

    for stage in STAGES:
        rec.ratio(f"scale_{stage}_exponent_inverse", 1 / max(analysis[stage]["time"]["exponent"], MIN_EXPONENT))
    rec.ratio("scale_ingest_2m_target", INGEST_TARGET_S / analysis["ingest"]["seconds_2m_8_cores"])
    for stage in STAGES:
        rec.ratio(f"scale_{stage}_rss_2m_target", RSS_TARGET / analysis[stage]["peak_memory_2m_8_cores"])
    rec.finish(
        sizes=sizes,
        epochs=epochs,
        workers=args.workers,
        target={"records": TARGET_N, "cores": TARGET_CORES},
        input_made_s=round(made_s, 1),
        results={str(n): results[n] for n in sizes},
        workers_check=workers_check,
        calibration=calibration,
        analysis=analysis,
        plot=str(plot_path) if plot_path else None,
    )


if __name__ == "__main__":
    main()
