"""The label vocabulary and class weights: ``labels.json``, read by shards and the trainer.

    {"label_field": "inspect.emotion",
     "vocabulary": ["행복/즐거움", ...],            # position = label_id
     "counts": {"train": {name: n}, "val": {...}, "all": {...}},   # and "test" when the manifest has test rows
     "class_weights": {"balanced": [...], "effective_number": [...],
                       "effective_number_beta": 0.99999, "computed_on": "train"}}

The effective-number beta defaults to ``1 - 1/n_max`` (n_max: the largest training class). A fixed
0.999 makes every class above a few thousand samples "effectively" 1,000 samples, so at the users'
scale (50k+ frames per class) the weights collapse to uniform without a word; Cui et al. found the
best beta near ``1 - 1/N`` with N about the size of the largest classes (0.9999 on long-tailed
CIFAR with 5,000 per class, 0.999 on iNaturalist/ImageNet with ~1,000), which this follows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
from pydantic import ConfigDict

from pawpipe.common.contracts.ingest_tables import listed_splits
from pawpipe.common.contracts.json_file import Section

WEIGHT_SCHEMES = ("balanced", "effective_number", "none")

log = logging.getLogger(__name__)


class ClassWeights(Section):
    """``class_weights`` of labels.json, which ``shards build`` copies into dataset.json as is.

    Every field is set in the files the pipeline writes; a hand-made dataset.json may give a few.
    """

    model_config = ConfigDict(extra="forbid")

    balanced: list[float] | None = None  # position = label_id
    effective_number: list[float] | None = None
    effective_number_beta: float | None = None
    computed_on: str | None = None  # the split the counts came from: "train"


def effective_number_beta(counts: list[int]) -> float:
    """``1 - 1/n_max`` over the classes present (0.9 for an empty or one-sample split)."""
    largest = max(counts, default=0)
    return 1.0 - 1.0 / largest if largest > 10 else 0.9


def class_weights(counts: list[int], scheme: str = "balanced", *, beta: float = 0.999) -> list[float]:
    """Per-class loss weights from training counts; a class with no samples gets weight 0.

    * ``balanced``: n / (k * n_c), as scikit-learn's ``compute_class_weight``;
    * ``effective_number``: (1 - beta) / (1 - beta**n_c), normalised to mean 1 over present
      classes (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", 2019);
    * ``none``: all ones.
    """
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"class weights: expected one of {WEIGHT_SCHEMES}, got {scheme!r}")
    present = [c for c in counts if c > 0]
    if scheme == "none" or not present:
        return [1.0] * len(counts)
    if scheme == "balanced":
        total, k = sum(present), len(present)
        return [total / (k * c) if c > 0 else 0.0 for c in counts]
    raw = [(1.0 - beta) / (1.0 - beta**c) if c > 0 else 0.0 for c in counts]
    mean = sum(raw) / len(present)
    return [r / mean for r in raw]


def build_labels(
    manifest: pl.DataFrame, vocabulary: tuple[str, ...], *, label_field: str, beta: float | None = None
) -> dict:
    """The ``labels.json`` document for a clean manifest (weights computed on the train split;
    ``beta`` None: from the data, module docstring)."""
    counts: dict[str, dict[str, int]] = {}
    for split in (*listed_splits(manifest.get_column("split").unique()), "all"):
        part = manifest if split == "all" else manifest.filter(pl.col("split") == split)
        found = dict(part.group_by("label").len().iter_rows())
        counts[split] = {name: int(found.get(name, 0)) for name in vocabulary}
    train = [counts["train"][name] for name in vocabulary]
    beta = effective_number_beta(train) if beta is None else beta
    effective = class_weights(train, "effective_number", beta=beta)
    present = [c for c in train if c > 0]
    if (
        len(present) > 1
        and max(present) >= 2 * min(present)
        and max(effective) < 1.05 * min(w for w in effective if w > 0)
    ):
        log.warning(
            "effective_number class weights are nearly uniform (beta %g, classes of %d to %d samples): "
            "raise effective_number_beta towards 1 - 1/%d or use balanced weights",
            beta,
            min(present),
            max(present),
            max(present),
        )
    return {
        "label_field": label_field,
        "vocabulary": list(vocabulary),
        "counts": counts,
        "class_weights": ClassWeights(
            balanced=class_weights(train, "balanced"),
            effective_number=effective,
            effective_number_beta=beta,
            computed_on="train",
        ).model_dump(),
    }


def load_labels(manifest_dir: str | Path) -> dict:
    """Read ``labels.json`` from an ``ingest clean`` output folder."""
    path = Path(manifest_dir) / "labels.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read labels: {exc}") from None
