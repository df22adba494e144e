"""Configuration of ``shards build``: a pydantic model from TOML (``--config``), with CLI overrides."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from pawpipe.common.config import load_config
from pawpipe.common.executor import ExecutorOptions

# The options that decide the bytes of every shard. Per-run options (workers, partition,
# retry_failed...) are left out on purpose: any worker count or partitioning of the same
# build gives the same files, so they may be mixed, and a rerun with another --workers resumes.
OUTPUT_FIELDS = ("crop", "margin", "size", "max_upscale", "quality", "max_samples", "max_bytes", "seed")


class ShardConfig(ExecutorOptions):
    model_config = ConfigDict(extra="forbid")

    manifest_dir: Path  # an ``ingest clean`` output: manifest.parquet, labels.json, clean_config.json
    out: Path
    root: Path | None = None  # dataset root; default: "root" in MANIFEST_DIR/clean_config.json
    crop: Literal["bbox", "full"] = "bbox"
    margin: float = Field(0.1, ge=0.0, le=2.0)  # added on every side, as a fraction of the box's width/height
    size: int = Field(256, ge=8, le=8192)  # shorter side of the stored image
    max_upscale: float = Field(1.0, ge=1.0, le=8.0)  # 1.0: a crop smaller than `size` is stored as is
    quality: int = Field(90, ge=1, le=100)  # JPEG quality of the re-encoded crop
    max_samples: int = Field(3000, ge=1)  # per planned shard
    max_bytes: int = Field(256 * 2**20, ge=1)  # per tar; a planned shard over it is split into parts
    seed: int = 0  # of the global shuffle
    workers: int = Field(
        default_factory=lambda: len(os.sched_getaffinity(0)), ge=1
    )  # the cores this job may use (executor local)
    num_partitions: int = Field(1, ge=1)  # K copies of the job on K machines (Slurm array, k8s indexed job)
    partition: int = Field(0, ge=0)  # which of them this is, 0..K-1
    finalize: bool = False  # only write the split-level parquet/json, once every partition is done
    retry_failed: bool = False  # redo finished shards that recorded failed samples (e.g. after fixing --root)
    max_failed_fraction: float = Field(0.05, gt=0.0, le=1.0)  # abort above this share (after 1000 samples)
    quiet: bool = False
    # Data diet (shards.select): keep this share of each class's training samples, ranked by `by`
    # (default: el2n with a `train scores` file, else random); validation stays whole.
    select: Path | None = None  # scores.parquet
    keep: float | None = Field(None, gt=0.0, le=1.0)
    by: Literal["el2n", "forgetting", "random"] | None = None
    keep_per_class_min: int = Field(1, ge=0)
    # Frames ingest flagged image.near_duplicate go last, whatever the ranking: with `random`, that is
    # de-duplication alone, the measured recommendation (docs/diet.md); plain random is the baseline.
    near_duplicates_last: bool = True

    def method(self) -> str:
        """The ranking: ``by`` as given, else ``el2n`` when a scores file is given and ``random`` when not."""
        return self.by or ("el2n" if self.select is not None else "random")

    @model_validator(mode="after")
    def _partition_in_range(self) -> ShardConfig:
        if self.partition >= self.num_partitions:
            raise ValueError(f"partition {self.partition} is not below num_partitions {self.num_partitions}")
        return self

    @model_validator(mode="after")
    def _selection_complete(self) -> ShardConfig:
        if self.select is not None and self.keep is None:
            raise ValueError("select: expected --keep SHARE with --select FILE")
        if self.keep is not None and self.select is None and self.method() != "random":
            raise ValueError(f"keep: --by {self.by} ranks by scores; expected --select scores.parquet (or --by random)")
        return self

    def output_options(self) -> dict:
        """The options that decide the shards' bytes (recorded in build_config.json)."""
        return {name: getattr(self, name) for name in OUTPUT_FIELDS}

    def allowed_roots(self) -> tuple[str, ...]:
        """The folders outside the root that ``ingest clean --allow-root`` admitted (clean_config.json)."""
        try:
            recorded = json.loads((self.manifest_dir / "clean_config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return ()
        return tuple(str(Path(p).resolve()) for p in recorded.get("allow_roots") or ())

    def resolved_root(self) -> Path:
        """``root`` if given, else the ``root`` that ``ingest clean`` recorded in clean_config.json."""
        if self.root is not None:
            return self.root.resolve()
        path = self.manifest_dir / "clean_config.json"
        try:
            root = json.loads(path.read_text(encoding="utf-8"))["root"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: expected a JSON object with the dataset 'root' (or pass --root), got {exc!r}"
            ) from None
        return Path(root).resolve()


def load_shard_config(path: str | Path | None, overrides: dict) -> ShardConfig:
    """A ``ShardConfig`` from an optional TOML file, then the CLI values that were given."""
    return load_config(path, overrides, ShardConfig)
