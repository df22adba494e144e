"""``shards build``: manifest -> shuffled, verified WebDataset shards, in parallel, resumable.

The plan (``shards.assign``) fixes which samples go to which planned shard; each planned shard
is built whole by one worker (``shards.worker.build_shard``: a local process or a Ray task,
``common.executor``), which writes its tar(s) and index atomically and then its journal
entry (``shards.journal``). A rerun skips planned shards whose entry and files are in place
and redoes the rest, so a run killed at any moment and rerun gives the same bytes as an
uninterrupted one, whatever ``--workers`` or ``--executor``.

With ``--num-partitions K --partition I`` a run builds only its share of planned shards (K
copies on K machines against shared storage); ``--finalize`` then writes the split-level
files once all are done. With K = 1 a build finalizes itself.

Failure policy: a sample that cannot be read or decoded is recorded in ``failed.parquet``
with its reason and the job goes on; above ``max_failed_fraction`` of the samples processed
(once at least 1000 were), the run aborts, since that means a wrong root or broken storage.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from pawpipe.common.atomic import check_outputs, sweep_temps, write_parquet
from pawpipe.common.contracts.dataset_file import DATASET_FILE, DatasetFile, ImageSpec, PixelStats, SplitCounts
from pawpipe.common.contracts.ingest_tables import SPLITS, listed_splits, polars_schema
from pawpipe.common.contracts.labels_file import load_labels
from pawpipe.common.contracts.shard_tables import (
    FAILED,
    FAILED_FILE,
    NOT_SELECTED,
    SAMPLES,
    SAMPLES_FILE,
    SHARDS,
    SHARDS_FILE,
    check_columns,
)
from pawpipe.common.executor import Executor, LocalExecutor, open_executor
from pawpipe.common.folders import check_target
from pawpipe.common.lock import FolderLock
from pawpipe.common.progress import progress
from pawpipe.shards import journal
from pawpipe.shards.assign import (
    ROW_COLUMNS,
    PlannedShard,
    manifest_sha256,
    plan_shards,
    read_manifest,
    shuffled_splits,
)
from pawpipe.shards.config import ShardConfig
from pawpipe.shards.select import Selection, select_train
from pawpipe.shards.worker import ShardTask, build_shard

MIN_SAMPLES_FOR_ABORT = 1000

SHARDS_DTYPES, SAMPLES_DTYPES, FAILED_DTYPES = polars_schema(SHARDS), polars_schema(SAMPLES), polars_schema(FAILED)
# A journal entry's samples (shards.worker): samples.parquet's columns but the reason, decode_path named "path".
_ENTRY_SAMPLES = {
    "path" if name == "decode_path" else name: dtype for name, dtype in SAMPLES_DTYPES.items() if name != "reason"
}


class BuildAborted(RuntimeError):
    """Too many samples failed: the root or the storage is probably wrong."""


@dataclass
class BuildSummary:
    out: Path
    partition: str  # "I of K"
    planned: int  # planned shards of this partition
    built: int = 0
    skipped: int = 0  # finished by an earlier run
    samples: int = 0  # written by this run
    failed: int = 0  # failed in this run
    bytes: int = 0
    seconds: float = 0.0
    paths: Counter = field(default_factory=Counter)  # decode path -> samples
    reasons: Counter = field(default_factory=Counter)  # failure reason -> samples
    finalized: DatasetFile | None = None  # dataset.json, when this run finalized

    @property
    def rate(self) -> float:
        return (self.samples + self.failed) / self.seconds if self.seconds else 0.0


def build(config: ShardConfig) -> BuildSummary:
    """Build this partition's planned shards that are not finished yet; finalize when K = 1.

    The input must be one finished ``ingest clean`` set; the partition holds a lock on ``--out``
    (a second build of it is refused, a dead one's lock is taken over).
    """
    check_outputs(config.manifest_dir, tool="ingest clean", needs=("manifest.parquet", "labels.json"))
    check_target(config.out, "shards build")
    try:
        with partition_lock(config):
            return _build_locked(config)
    except OSError as exc:  # a full disk in a worker's tar write arrives without a path: name the output
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(config.out)) from exc
        raise


def partition_lock(config: ShardConfig) -> FolderLock:
    """The lock of this partition (or of finalize) on ``--out``: one process builds it at a time."""
    name = ".finalize.lock" if config.finalize else f".build-{config.partition}-of-{config.num_partitions}.lock"
    return FolderLock(
        config.out, name=name, busy="being built" + ("" if config.finalize else f" (partition {config.partition})")
    )


def _build_locked(config: ShardConfig) -> BuildSummary:
    if config.finalize:
        started = time.perf_counter()
        doc = finalize(config)
        return BuildSummary(
            out=config.out, partition="finalize", planned=0, seconds=time.perf_counter() - started, finalized=doc
        )
    with open_executor(config) as executor:  # first: a missing extra or an unreachable cluster fails before planning
        return _build(config, executor)


def _build(config: ShardConfig, executor: Executor) -> BuildSummary:
    started = time.perf_counter()
    ctx = _context(config)
    mine = [p for p in ctx.planned if p.partition(config.num_partitions) == config.partition]
    summary = BuildSummary(
        out=config.out, partition=f"{config.partition} of {config.num_partitions}", planned=len(mine)
    )
    _sweep_partials(config.out, {(p.split, p.name) for p in mine})
    todo, done_samples = [], 0
    for p in mine:
        entry = journal.read_entry(config.out, p.split, p.name)
        if journal.is_finished(config.out, entry, ctx.fingerprint) and not (
            config.retry_failed and entry["failed"]["sample_id"]
        ):
            summary.skipped += 1
            done_samples += p.stop - p.start
        else:
            todo.append(p)
    desc = "shards build" + (f" [{summary.partition}]" if config.num_partitions > 1 else "")
    bar = progress(sum(p.stop - p.start for p in mine), desc=desc, unit="img", disable=config.quiet)
    bar.update(done_samples)
    processed = 0
    entries = _run(config, ctx, todo, executor)
    try:
        for entry in entries:
            summary.built += 1
            written, failed = len(entry["samples"]["sample_id"]), len(entry["failed"]["sample_id"])
            summary.samples += written
            summary.failed += failed
            summary.bytes += sum(part["bytes"] for part in entry["parts"])
            summary.paths.update(entry["samples"]["path"])
            summary.reasons.update(entry["failed"]["reason"])
            processed += written + failed
            bar.update(written + failed)
            if processed >= MIN_SAMPLES_FOR_ABORT and summary.failed > config.max_failed_fraction * processed:
                raise BuildAborted(
                    f"{summary.failed} of {processed} samples failed ({summary.failed / processed:.0%}), above "
                    f"max_failed_fraction {config.max_failed_fraction:.0%}: {dict(summary.reasons.most_common(3))}; "
                    f"is the root {ctx.root} right? Finished shards are kept; rerun with --retry-failed after fixing it"
                )
    finally:
        entries.close()  # stops the work in flight when the loop ends early
        bar.close()
    summary.seconds = time.perf_counter() - started
    if config.num_partitions == 1:
        summary.finalized = finalize(config, ctx)
        summary.seconds = time.perf_counter() - started
    return summary


@dataclass(frozen=True)
class _Context:
    root: Path
    labels: dict
    splits: dict[str, pl.DataFrame]
    planned: list[PlannedShard]
    fingerprint: str
    selection: Selection | None = None  # a data-diet build (--select/--keep): the training rows left out
    allowed: tuple[
        str, ...
    ] = ()  # folders outside the root that symlinks under it may lead into (ingest's --allow-root)


def _context(config: ShardConfig) -> _Context:
    """Everything a run derives from the manifest and options, identical in every partition."""
    root = config.resolved_root()
    if not root.is_dir():
        raise ValueError(f"{root}: expected the dataset root folder, got {'a file' if root.exists() else 'nothing'}")
    manifest = read_manifest(config.manifest_dir)
    if manifest.is_empty():  # an empty manifest is never a success: nothing downstream could use the shards
        raise ValueError(
            f"{config.manifest_dir / 'manifest.parquet'}: expected clean samples, got none; see its report.html"
        )
    labels = load_labels(config.manifest_dir)
    num_classes = len(labels["vocabulary"])
    too_big = manifest.filter(manifest["label_id"] >= num_classes)
    if too_big.height:
        raise ValueError(
            f"{config.manifest_dir}: label_id {too_big['label_id'][0]} for sample "
            f"{too_big['sample_id'][0]!r}, expected < {num_classes} (labels.json vocabulary)"
        )
    selection = None
    if config.keep is not None:  # the plan covers the kept rows only; the rest are accounted for at finalize
        warnings = pl.read_parquet(config.manifest_dir / "manifest.parquet", columns=["sample_id", "warnings"])
        selection = select_train(
            manifest,
            scores=config.select,
            method=config.method(),
            keep=config.keep,
            keep_per_class_min=config.keep_per_class_min,
            seed=config.seed,
            near_duplicates_last=config.near_duplicates_last,
            warnings=warnings,
        )
        manifest = selection.apply(manifest)
    doc = journal.build_document(
        {**config.output_options(), **(selection.options() if selection else {})},
        manifest_dir=config.manifest_dir,
        manifest_sha256=manifest_sha256(config.manifest_dir),
        root=root,
    )
    journal.record_build(config.out, doc)
    splits = shuffled_splits(manifest, seed=config.seed)
    return _Context(
        root,
        labels,
        splits,
        plan_shards(splits, max_samples=config.max_samples),
        doc["fingerprint"],
        selection,
        config.allowed_roots(),
    )


def _tasks(config: ShardConfig, ctx: _Context, todo: list[PlannedShard], parent_pid: int | None):
    options = config.output_options()
    for p in todo:
        rows = ctx.splits[p.split].slice(p.start, p.stop - p.start).select(ROW_COLUMNS).to_dicts()
        yield ShardTask(
            str(config.out.resolve()),
            str(ctx.root),
            p.split,
            p.name,
            rows,
            options,
            len(ctx.labels["vocabulary"]),
            ctx.fingerprint,
            parent_pid,
            ctx.allowed,
        )


def _run(config: ShardConfig, ctx: _Context, todo: list[PlannedShard], executor: Executor):
    """Journal entries of the planned shards in ``todo``, in order, as the executor finishes them."""
    if not todo:
        return
    workers = min(config.workers, len(todo))
    # Local worker processes stop by themselves when this process is killed; Ray's workers and
    # the in-process path have another parent, so they get no parent pid to watch.
    parent_pid = os.getpid() if isinstance(executor, LocalExecutor) and workers > 1 else None
    yield from executor.map(build_shard, _tasks(config, ctx, todo, parent_pid), workers=workers)


def _sweep_partials(out: Path, planned: set[tuple[str, str]] | None) -> None:
    """Remove temporary files a killed run left for these planned shards (all when None)."""
    for split in SPLITS:
        folder = out / split
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".shard-*.partial"):
            name = tmp.name[1:].split(".", 1)[0].split("_", 1)[0]
            if planned is None or (split, name) in planned:
                tmp.unlink(missing_ok=True)
    for split, name in planned or ():
        sweep_temps(journal.entry_path(out, split, name))  # an entry whose write was killed


def _sweep_finalize_temps(out: Path) -> None:
    """Remove what a killed finalize left: only finalize writes these files, and it runs alone."""
    for name in (DATASET_FILE, FAILED_FILE):
        sweep_temps(out / name)
    for split in SPLITS:
        for name in (SHARDS_FILE, SAMPLES_FILE):
            sweep_temps(out / split / name)


def finalize(config: ShardConfig, ctx: _Context | None = None) -> DatasetFile:
    """Write each split's shards.parquet and samples.parquet, failed.parquet and dataset.json,
    once every planned shard of every partition is finished; returns dataset.json."""
    ctx = ctx or _context(config)
    out = config.out
    entries, missing = {}, []
    for p in ctx.planned:
        entry = journal.read_entry(out, p.split, p.name)
        if journal.is_finished(out, entry, ctx.fingerprint):
            entries[p] = entry
        else:
            missing.append(p)
    if missing:
        where = (
            (lambda p: f" (partition {p.partition(config.num_partitions)})")
            if config.num_partitions > 1
            else (lambda p: "")
        )
        raise ValueError(
            f"{out}: {len(missing)} of {len(ctx.planned)} planned shards are not finished, e.g. "
            + ", ".join(f"{p.split}/{p.name}{where(p)}" for p in missing[:5])
            + "; run (again) the build partitions that own them, then --finalize"
        )
    _sweep_partials(out, None)
    _sweep_finalize_temps(out)
    vocabulary = ctx.labels["vocabulary"]
    failed_frames, counts, shard_lists = [], {}, {}
    pixels = {"count": 0, "sum": [0, 0, 0], "sum_sq": [0, 0, 0]}
    for split in listed_splits(split for split, rows in ctx.splits.items() if rows.height):
        mine = [entries[p] for p in ctx.planned if p.split == split]
        shards = pl.DataFrame(
            [
                {
                    "shard": part["shard"],
                    "planned": e["planned"],
                    "samples": part["samples"],
                    "bytes": part["bytes"],
                    "sha256": part["sha256"],
                    "classes": part["classes"],
                }
                for e in mine
                for part in e["parts"]
            ],
            schema=SHARDS_DTYPES,
        )
        samples = pl.concat(
            [pl.DataFrame(e["samples"], schema=_ENTRY_SAMPLES) for e in mine] or [pl.DataFrame(schema=_ENTRY_SAMPLES)]
        ).rename({"path": "decode_path"})
        failed = pl.concat(
            [
                pl.DataFrame(
                    {
                        **e["failed"],
                        "split": [split] * len(e["failed"]["sample_id"]),
                        "planned_shard": [e["planned"]] * len(e["failed"]["sample_id"]),
                    },
                    schema=FAILED_DTYPES,
                ).select(list(FAILED_DTYPES))
                for e in mine
            ]
            or [pl.DataFrame(schema=FAILED_DTYPES)]
        )
        _check_accounting(split, ctx.splits[split], samples, failed)
        if split == "train":
            for e in mine:
                pixels["count"] += e["pixels"]["count"]
                pixels["sum"] = [a + b for a, b in zip(pixels["sum"], e["pixels"]["sum"])]
                pixels["sum_sq"] = [a + b for a, b in zip(pixels["sum_sq"], e["pixels"]["sum_sq"])]
        _write_table(out / split / SHARDS_FILE, shards, SHARDS)
        samples = samples.with_columns(reason=pl.lit(None, dtype=SAMPLES_DTYPES["reason"]))
        left_out = ctx.selection.not_selected() if ctx.selection is not None and split == "train" else samples.clear()
        _write_table(
            out / split / SAMPLES_FILE,
            pl.concat([samples, _not_selected_rows(left_out)], how="diagonal_relaxed"),
            SAMPLES,
        )
        failed_frames.append(failed)
        per_class = [0] * len(vocabulary)
        for label_id, n in samples.group_by("label_id").len().iter_rows():
            per_class[label_id] = n
        counts[split] = SplitCounts(
            manifest=ctx.splits[split].height + left_out.height,
            written=samples.height,
            failed=failed.height,
            shards=shards.height,
            bytes=int(shards["bytes"].sum() or 0),
            per_class=per_class,
            not_selected=left_out.height if ctx.selection is not None else None,
        )
        shard_lists[split] = shards["shard"].to_list()
    _write_table(out / FAILED_FILE, pl.concat(failed_frames), FAILED)
    doc = DatasetFile(
        format=journal.FORMAT,
        label_field=ctx.labels.get("label_field"),
        labels=vocabulary,
        num_classes=len(vocabulary),
        class_weights=ctx.labels.get("class_weights"),
        counts=counts,
        image=ImageSpec(
            encoding="JPEG, 8-bit RGB, baseline 4:2:0",
            size=config.size,
            size_is="the shorter side; crops smaller than size * max_upscale keep their own size",
            max_upscale=config.max_upscale,
            crop=config.crop,
            margin=config.margin,
            quality=config.quality,
        ),
        pixel_stats=_pixel_stats(pixels),
        seed=config.seed,
        shards=shard_lists,
        fingerprint=ctx.fingerprint,
        selection=ctx.selection.describe(vocabulary) if ctx.selection is not None else None,
    )
    doc.write(out)
    return doc


def _write_table(path: Path, frame: pl.DataFrame, schema: pa.Schema) -> None:
    """Write one of the shard tables, refusing a frame whose columns are not its contract's."""
    write_parquet(path, check_columns(path, frame, schema))


def _not_selected_rows(left_out: pl.DataFrame) -> pl.DataFrame:
    """samples.parquet rows for training samples a data-diet build left out: no shard, reason not_selected."""
    dtype = SAMPLES_DTYPES
    return left_out.select(
        "sample_id",
        pl.lit(None, dtype=dtype["key"]).alias("key"),
        pl.lit(None, dtype=dtype["shard"]).alias("shard"),
        pl.col("label_id").cast(dtype["label_id"]),
        pl.lit(None, dtype=dtype["decode_path"]).alias("decode_path"),
        pl.lit(NOT_SELECTED, dtype=dtype["reason"]).alias("reason"),
    )


def _pixel_stats(pixels: dict) -> PixelStats:
    n = pixels["count"]
    mean = [s / n for s in pixels["sum"]] if n else [0.0] * 3
    std = [math.sqrt(max(0.0, q / n - m * m)) for q, m in zip(pixels["sum_sq"], mean)] if n else [0.0] * 3
    return PixelStats(
        computed_on="train",
        scale="0-255 (uint8 RGB)",
        pixels=n,
        mean=[round(v, 4) for v in mean],
        std=[round(v, 4) for v in std],
    )


def _check_accounting(split: str, planned: pl.DataFrame, samples: pl.DataFrame, failed: pl.DataFrame) -> None:
    """Every manifest row of the split is in exactly one shard or in failed.parquet."""
    ids = pl.concat([samples.select("sample_id"), failed.select("sample_id")])
    dup = ids.filter(pl.col("sample_id").is_duplicated())
    lost = planned.select("sample_id").join(ids, on="sample_id", how="anti")
    extra = ids.join(planned.select("sample_id"), on="sample_id", how="anti")
    if dup.height or lost.height or extra.height:
        raise RuntimeError(
            f"accounting, split {split}: {planned.height} manifest rows, {samples.height} written + {failed.height} "
            f"failed; repeated {dup['sample_id'].head(3).to_list()}, lost {lost['sample_id'].head(3).to_list()}, "
            f"unknown {extra['sample_id'].head(3).to_list()}"
        )
