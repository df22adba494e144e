"""``SHARDS/dataset.json``: what a ``shards build`` holds, written by its finalize, read by ``shards
verify`` and the trainer (``train.data.dataset``).

    {"format": 1, "label_field": "inspect.emotion", "labels": [...names, index = label id...],
     "num_classes": K, "class_weights": {labels.json's, common.contracts.labels_file.ClassWeights},
     "counts": {"train": {"manifest", "written", "failed", "shards", "bytes", "per_class": [...]},
                "val": ..., "test": ...},
     "image": {"encoding", "size", "size_is", "max_upscale", "crop", "margin", "quality"},
     "pixel_stats": {"computed_on": "train", "scale": "0-255 (uint8 RGB)", "pixels", "mean": [r, g, b], "std": [...]},
     "seed": 0, "shards": {"train": [tar names], ...}, "fingerprint": "...",
     "selection": {...}}                      # data-diet builds only (``shards.select``)

``counts`` and ``shards`` have one entry per split (``common.contracts.ingest_tables.SPLITS``): ``train`` and ``val``
always, ``test`` when the manifest has test rows (a held-out split the trainer never reads).

The build writes every field; a hand-made file needs only ``labels`` (the sections it gives are
checked all the same). Readers ignore fields they do not know (a file of another version); a
writer can set only the declared ones. ``DatasetFile.read`` reports a bad file in one line naming the file and the
field: ``SHARDS/dataset.json: counts.train.per_class.1: expected a valid integer, got 'x'``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pawpipe.common.atomic import write_json
from pawpipe.common.contracts.json_file import Section, read_json, validate
from pawpipe.common.contracts.labels_file import ClassWeights

DATASET_FILE = "dataset.json"


class SplitCounts(Section):
    """``counts[split]``: where the split's manifest rows went."""

    model_config = ConfigDict(extra="forbid")

    manifest: int | None = None  # clean manifest rows of the split (with the rows a selection left out)
    written: int | None = None  # samples in the split's tars
    failed: int | None = None  # rows in failed.parquet
    shards: int | None = None  # tars
    bytes: int | None = None  # of the tars
    per_class: list[int] | None = None  # written samples per label id
    not_selected: int | None = None  # training rows a data-diet build left out; absent from other builds


class ImageSpec(Section):
    """``image``: how the stored pictures were made (``shards.crop``)."""

    model_config = ConfigDict(extra="forbid")

    encoding: str | None = None
    size: int | None = None  # the shorter side, px
    size_is: str | None = None
    max_upscale: float | None = None
    crop: str | None = None  # "bbox" or "full"
    margin: float | None = None
    quality: int | None = None  # JPEG quality


class PixelStats(Section):
    """``pixel_stats``: mean and std per RGB channel of the stored train images, in 0-255 units."""

    model_config = ConfigDict(extra="forbid")

    computed_on: str | None = None
    scale: str | None = None
    pixels: int | None = None
    mean: list[float]
    std: list[float]


class ClassSelection(BaseModel):
    """``selection.per_class[name]``: training samples of the class, kept, and without a score."""

    model_config = ConfigDict(extra="forbid")

    train: int
    selected: int
    unscored: int


class SelectionSummary(BaseModel):
    """``selection``: how a data-diet build chose its training samples (``shards.select``)."""

    model_config = ConfigDict(extra="forbid")

    method: str
    keep: float
    keep_per_class_min: int
    near_duplicates_last: bool
    near_duplicates: int
    near_duplicates_selected: int
    scores: str | None  # the scores file, None for --by random without one
    scores_sha256: str | None
    train: int
    selected: int
    not_selected: int
    per_class: dict[str, ClassSelection]


class DatasetFile(BaseModel):
    """The whole of ``dataset.json`` (module docstring); fields in the order the file lists them."""

    model_config = ConfigDict(extra="forbid")

    format: int | None = None
    label_field: str | None = None
    labels: list[str]
    num_classes: int | None = None
    class_weights: ClassWeights | None = None
    counts: dict[str, SplitCounts] = {}
    image: ImageSpec | None = None
    pixel_stats: PixelStats | None = None
    seed: int | None = None
    shards: dict[str, list[str]] = {}  # tar names per split
    fingerprint: str | None = None  # of the build (build_config.json)
    selection: SelectionSummary | None = None  # written only by a data-diet build

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/dataset.json`` atomically; returns its path."""
        path = Path(folder) / DATASET_FILE
        write_json(path, self.model_dump(exclude={"selection"} if self.selection is None else None))
        return path

    @classmethod
    def read(cls, path: str | Path) -> DatasetFile:
        """Read and check a ``dataset.json`` file (``find_dataset_file`` finds it from a split folder)."""
        path = Path(path)
        return validate(path, cls, read_json(path, what="the shards' dataset description"), extra="ignore")


def find_dataset_file(path: str | Path) -> Path:
    """``dataset.json`` in ``path`` (the shards root) or its parent (``path`` is a split folder)."""
    path = Path(path)
    for folder in (path, path.parent):
        if (folder / DATASET_FILE).is_file():
            return folder / DATASET_FILE
    raise FileNotFoundError(f"{path}: expected {DATASET_FILE} here or in the parent folder (written by `shards build`)")
