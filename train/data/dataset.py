"""What the trainer takes from ``SHARDS/dataset.json`` (the file's contract is
``common.contracts.dataset_file``), and what a ``--data`` argument stands for (``shards_root`` for
training, ``split_folder`` for eval and predict); the loader factory is ``train.data.loader.open_loader``."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel

from pawpipe.common.contracts.dataset_file import DATASET_FILE, DatasetFile, SplitCounts, find_dataset_file
from pawpipe.common.contracts.ingest_tables import SPLITS
from pawpipe.common.contracts.labels_file import ClassWeights
from pawpipe.common.contracts.labels_file import class_weights as compute_class_weights
from pawpipe.train.config import ConfigError

log = logging.getLogger(__name__)


class DatasetInfo(BaseModel):
    """The trainer's view of ``dataset.json``: label names, class weights, counts, stored image size and
    train pixel statistics (``read_dataset_info``); shard lists, fingerprint and the rest stay in the file."""

    vocabulary: list[str]
    class_weights: ClassWeights = ClassWeights()
    counts: dict[str, SplitCounts] = {}
    image_size: int | None = None  # side of the stored images (shorter side), px
    mean: list[float] | None = None  # train pixel mean, 0-255 scale
    std: list[float] | None = None

    @classmethod
    def of(cls, doc: DatasetFile) -> DatasetInfo:
        stats = doc.pixel_stats
        return cls(
            vocabulary=doc.labels,
            class_weights=doc.class_weights or ClassWeights(),
            counts=doc.counts,
            image_size=doc.image.size if doc.image else None,
            mean=stats.mean if stats else None,
            std=stats.std if stats else None,
        )

    @property
    def num_classes(self) -> int:
        return len(self.vocabulary)

    def split_counts(self, split: str = "train") -> list[int] | None:
        """Samples per class for ``split`` (as written to the shards), or None when not recorded."""
        found = self.counts.get(split)
        if found is None or found.per_class is None or len(found.per_class) != self.num_classes:
            return None
        return list(found.per_class)

    def weights(self, scheme: str) -> list[float] | None:
        """Per-class loss weights: ``none`` -> None; else the stored list, else computed from train counts."""
        if scheme == "none":
            return None
        stored = self.class_weights.model_dump().get(scheme)
        if isinstance(stored, list):
            if len(stored) != self.num_classes:
                raise ValueError(
                    f"{DATASET_FILE}: class_weights.{scheme}: expected {self.num_classes} values, got {len(stored)}"
                )
            return [float(w) for w in stored]
        counts = self.split_counts("train")
        if counts is None:
            raise ValueError(
                f"{DATASET_FILE}: expected class_weights.{scheme} or counts.train to compute it, found neither"
            )
        beta = self.class_weights.effective_number_beta
        return compute_class_weights(counts, scheme, beta=0.999 if beta is None else beta)


def check_shards_folder(path: str | Path | None, *, what: str = "data.shards") -> Path:
    """``path`` when it is a shards folder (``dataset.json`` in it, or in its parent for a split folder);
    else a ``ConfigError`` naming ``what`` (the field or flag that gave it) and the path: checked where a
    run is asked for (``train run``, ``train submit``), not when its loaders open."""
    if path is None:
        raise ConfigError(f"{what}: expected the shards folder (with {DATASET_FILE}), got nothing")
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what}: {path}: no such folder; expected a `shards build` output (with {DATASET_FILE})")
    try:
        find_dataset_file(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return path


def read_dataset_info(path: str | Path) -> DatasetInfo:
    """Read ``dataset.json`` from a shards root or from one of its split folders."""
    return DatasetInfo.of(DatasetFile.read(find_dataset_file(path)))


def shards_root(data: Path | None) -> Path | None:
    """``--data`` for training: the shards folder; a split folder inside it stands for the folder."""
    if data is None:
        return None
    not_another_tools(data)
    check_shards_folder(data, what="--data")
    if not (data / DATASET_FILE).is_file() and (data.parent / DATASET_FILE).is_file():
        log.info("--data %s is a split folder: training on the shards folder %s", data, data.parent)
        return data.parent
    return data


def split_folder(data: Path, split: str = "val") -> Path:
    """``--data`` for eval/predict: a split folder; the shards folder stands for its ``split`` (``--split``)."""
    not_another_tools(data)
    if (data / DATASET_FILE).is_file():
        if not (data / split).is_dir():
            found = ", ".join(s for s in SPLITS if (data / s).is_dir()) or "none"
            raise ConfigError(
                f"--data {data}: expected a {split}/ split folder in the shards folder, got splits: {found}"
            )
        log.info("--data %s is the shards folder: using its %s split", data, split)
        return data / split
    return data


def not_another_tools(data: Path) -> None:
    """``--data`` is not an ``ingest clean`` output or a run directory (each named, with the way on)."""
    from pawpipe.common.folders import describe, what_is

    found = what_is(data)
    if found in ("ingest clean", "train run"):
        hint = "; run `shards build` on it first" if found == "ingest clean" else ""
        raise ConfigError(f"--data {data}: this is {describe(found)}, not shards{hint}")
