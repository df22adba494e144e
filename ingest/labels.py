"""The label vocabulary and class weights: ``labels.json``, read by shards and the trainer.

    {"label_field": "inspect.emotion",
     "vocabulary": ["행복/즐거움", ...],            # position = label_id
     "counts": {"train": {name: n}, "val": {...}, "all": {...}},
     "class_weights": {"balanced": [...], "effective_number": [...],
                       "effective_number_beta": 0.999, "computed_on": "train"}}
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from ingest.schema import SPLITS

WEIGHT_SCHEMES = ("balanced", "effective_number", "none")


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


def build_labels(manifest: pl.DataFrame, vocabulary: tuple[str, ...], *, label_field: str, beta: float = 0.999) -> dict:
    """The ``labels.json`` document for a clean manifest (weights computed on the train split)."""
    counts: dict[str, dict[str, int]] = {}
    for split in (*SPLITS, "all"):
        part = manifest if split == "all" else manifest.filter(pl.col("split") == split)
        found = dict(part.group_by("label").len().iter_rows())
        counts[split] = {name: int(found.get(name, 0)) for name in vocabulary}
    train = [counts["train"][name] for name in vocabulary]
    return {
        "label_field": label_field,
        "vocabulary": list(vocabulary),
        "counts": counts,
        "class_weights": {
            "balanced": class_weights(train, "balanced"),
            "effective_number": class_weights(train, "effective_number", beta=beta),
            "effective_number_beta": beta,
            "computed_on": "train",
        },
    }


def load_labels(manifest_dir: str | Path) -> dict:
    """Read ``labels.json`` from an ``ingest clean`` output folder."""
    path = Path(manifest_dir) / "labels.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read labels: {exc}") from None
