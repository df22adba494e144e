"""``dataset.json``, read in one place: ``read_dataset_info`` is the only code that knows the layout
of ``SHARDS/dataset.json`` (the loader factory is ``train.loader.open_loader``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from common.labels import class_weights as compute_class_weights
from train.batch import Loader

DATASET_FILE = "dataset.json"


class DatasetInfo(BaseModel):
    """What the trainer reads from ``dataset.json``; other keys (shard lists, fingerprint...) are ignored.

    Layout written by ``shards build`` (``shards/build.py: finalize``)::

        {"labels": [...names, index = label id...], "num_classes": K,
         "class_weights": {"balanced": [...], "effective_number": [...], "effective_number_beta": ...},
         "counts": {"train": {"written": n, "per_class": [...], ...}, "val": {...}, "test": {...}},
         "image": {"size": shorter side in px, ...}, "pixel_stats": {"mean": [...], "std": [...]}}

    ``vocabulary`` (as in ``labels.json``) is accepted for ``labels``, and ``counts[split]`` may
    also be ``{name: n}`` or a list by label id.
    """

    model_config = ConfigDict(extra="ignore")

    vocabulary: list[str]
    class_weights: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    image_size: int | None = None  # side of the stored images (shorter side), px
    mean: list[float] | None = None  # train pixel mean, 0-255 scale
    std: list[float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_shards_layout(cls, doc: Any) -> Any:
        if not isinstance(doc, dict):
            return doc
        doc = dict(doc)
        if "vocabulary" not in doc and "labels" in doc:
            doc["vocabulary"] = doc["labels"]
        if doc.get("image_size") is None and isinstance(doc.get("image"), dict):
            doc["image_size"] = doc["image"].get("size")
        stats = doc.get("pixel_stats")
        if isinstance(stats, dict):
            doc.setdefault("mean", stats.get("mean"))
            doc.setdefault("std", stats.get("std"))
        if doc.get("class_weights") is None:
            doc["class_weights"] = {}
        return doc

    @property
    def num_classes(self) -> int:
        return len(self.vocabulary)

    def split_counts(self, split: str = "train") -> list[int] | None:
        """Samples per class for ``split`` (as written to the shards), or None when not recorded."""
        found = self.counts.get(split)
        if isinstance(found, dict) and "per_class" in found:
            found = found["per_class"]
        if isinstance(found, dict):
            return [int(found.get(name, 0)) for name in self.vocabulary]
        if isinstance(found, list) and len(found) == self.num_classes:
            return [int(n) for n in found]
        return None

    def weights(self, scheme: str) -> list[float] | None:
        """Per-class loss weights: ``none`` -> None; else the stored list, else computed from train counts."""
        if scheme == "none":
            return None
        stored = self.class_weights.get(scheme)
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
        beta = float(self.class_weights.get("effective_number_beta", 0.999))
        return compute_class_weights(counts, scheme, beta=beta)


def find_dataset_file(path: str | Path) -> Path:
    """``dataset.json`` in ``path`` (the shards root) or its parent (``path`` is a split folder)."""
    path = Path(path)
    for folder in (path, path.parent):
        if (folder / DATASET_FILE).is_file():
            return folder / DATASET_FILE
    raise FileNotFoundError(f"{path}: expected {DATASET_FILE} here or in the parent folder (written by `shards build`)")


def read_dataset_info(path: str | Path) -> DatasetInfo:
    """Read ``dataset.json`` from a shards root or from one of its split folders."""
    file = find_dataset_file(path)
    try:
        return DatasetInfo.model_validate(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"{file}: cannot read dataset info: {exc}") from None
