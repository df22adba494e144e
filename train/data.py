"""The trainer's two data seams: ``dataset.json`` (read in one place) and the loader factory.

``read_dataset_info`` is the only code that knows the layout of ``SHARDS/dataset.json``;
``open_loader`` is the only call into ``train.loader.build_loader`` (imported lazily, so the rest
of the trainer works, and is tested, before or without that module).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ingest.labels import class_weights as compute_class_weights
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


def open_loader(
    split_dir: str | Path,
    *,
    train: bool,
    batch_size: int,
    image_size: int,
    device: str,
    seed: int,
    backend: str = "auto",
    workers: int = 4,
    rank: int = 0,
    world_size: int = 1,
    amp: bool = False,
) -> Loader:
    """The one place ``train run/eval/predict`` get a real loader (DALI or its PyTorch twin).

    ``split_dir, train, batch_size, image_size, device, seed`` are always passed; ``backend``,
    ``workers``, ``rank``, ``world_size`` and ``amp`` (float16 images on a GPU) only when ``build_loader`` declares them (or ``**kwargs``).
    """
    try:
        from train.loader import build_loader
    except ImportError as exc:
        raise RuntimeError(
            f"train.loader is not available ({exc}); the shard loaders are needed to read {split_dir}"
        ) from None
    optional = {"backend": backend, "workers": workers, "rank": rank, "world_size": world_size, "amp": amp}
    params = inspect.signature(build_loader).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        optional = {k: v for k, v in optional.items() if k in params}
    return build_loader(
        Path(split_dir), train=train, batch_size=batch_size, image_size=image_size, device=device, seed=seed, **optional
    )
