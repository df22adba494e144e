"""``train crossval``: out-of-fold probabilities for confident learning, from K ordinary training runs.

The training split of the manifest the shards were built from is cut into K folds **by
``group_id``** (the frames of one video never sit both in a model's training data and in its
held-out fold; groups go, largest first, to the fold with the fewest samples so far). For each fold k a
clean folder is written with fold k as its ``val`` split and the other folds as ``train``
(``ingest``'s ``write_resplit``, one set), shards are built from it with the original build's options
(``shards build``), and it is trained with the given config as a normal ``train run`` (resumable:
rerunning ``crossval`` continues where it stopped). The **last** checkpoint then predicts its
held-out fold (not the best one: that was chosen on the same fold). ``DIR/oof.parquet`` holds one row per
training sample: sample_id, fold, label_id, ``probs`` (the full vector, vocabulary order).

Cost: K trainings on (K-1)/K of the data. Cheap settings keep the ranking useful: a lower
``data.image_size``, fewer ``schedule.epochs`` (see docs/audit.md).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import polars as pl

from pawpipe.common.atomic import write_parquet
from pawpipe.common.contracts.dataset_file import DATASET_FILE
from pawpipe.train.config import TrainConfig

log = logging.getLogger(__name__)


def assign_folds(frame: pl.DataFrame, *, folds: int, seed: int = 0) -> pl.DataFrame:
    """``sample_id`` -> ``fold``: whole groups, balanced by samples (largest group first, ties by a
    seeded hash of the group id), each to the fold with the fewest samples so far (lowest index on ties)."""
    if folds < 2:
        raise ValueError(f"--folds: expected at least 2, got {folds}")
    sizes = (
        frame.group_by("group_id")
        .len()
        .with_columns(
            key=pl.col("group_id").map_elements(
                lambda g: hashlib.blake2b(f"{seed}\0{g}".encode(), digest_size=8).hexdigest(), return_dtype=pl.String
            )
        )
        .sort([pl.col("len"), pl.col("key")], descending=[True, False])
    )
    if sizes.height < folds:
        raise ValueError(f"--folds {folds}: only {sizes.height} groups (group_id) in the training split")
    load = [0] * folds
    fold_of: dict[str, int] = {}
    for group, n in sizes.select("group_id", "len").iter_rows():
        k = min(range(folds), key=lambda i: (load[i], i))
        fold_of[group] = k
        load[k] += n
    return frame.select("sample_id", fold=pl.col("group_id").replace_strict(fold_of, return_dtype=pl.Int64))


def crossval(cfg: TrainConfig, *, folds: int, out: str | Path) -> Path:
    """Train the K folds and write ``out/oof.parquet``; returns its path."""
    from pawpipe.ingest import write_resplit
    from pawpipe.shards import ShardConfig, read_build
    from pawpipe.shards import build_shards as build
    from pawpipe.train.fit.evaluate import predict_checkpoint
    from pawpipe.train.fit.run import train_from_config

    out = Path(out)
    if cfg.data.shards is None:
        raise ValueError("data.shards: expected the shards folder the folds are cut from, got nothing")
    built = read_build(cfg.data.shards)
    manifest_dir = Path(built["manifest_dir"])
    manifest = pl.read_parquet(manifest_dir / "manifest.parquet")
    train = manifest.filter(pl.col("split") == cfg.data.train_split)
    assignment = assign_folds(train, folds=folds, seed=cfg.seed)
    train = train.join(assignment, on="sample_id", how="left", maintain_order="left")
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "folds.parquet", assignment.sort("sample_id"))
    parts = []
    for k in range(folds):
        fold = out / f"fold_{k}"
        clean = fold / "clean"
        if not (clean / "manifest.parquet").is_file():
            fold_manifest = train.with_columns(
                split=pl.when(pl.col("fold") == k).then(pl.lit("val")).otherwise(pl.lit("train"))
            ).drop("fold")
            write_resplit(manifest_dir, clean, fold_manifest)
        if not (fold / "shards" / DATASET_FILE).is_file():
            build(
                ShardConfig(
                    manifest_dir=clean, out=fold / "shards", root=Path(built["root"]), quiet=True, **built["options"]
                )
            )
        fold_cfg = cfg.model_copy(
            update={
                "data": cfg.data.model_copy(
                    update={"shards": fold / "shards", "train_split": "train", "val_split": "val"}
                )
            }
        )
        log.info("fold %d of %d: %d held out", k + 1, folds, int((train.get_column("fold") == k).sum()))
        result = train_from_config(fold_cfg, run_dir=fold / "run")
        if not result.finished:
            raise RuntimeError(
                f"fold {k}: training stopped by {result.stopped_by}; rerun train crossval to continue it"
            )
        table = predict_checkpoint(
            result.last_checkpoint,
            fold / "shards" / "val",
            out=fold / "predictions.parquet",
            device=cfg.compute.device,
            weights="auto",
        )
        parts.append(pl.from_arrow(table).select("sample_id", pl.lit(k, pl.Int64).alias("fold"), "label_id", "probs"))
    oof = pl.concat(parts).sort("sample_id")
    write_parquet(out / "oof.parquet", oof)
    return out / "oof.parquet"
