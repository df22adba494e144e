"""Threshold samples in a training run: the loader's labels of a deterministic 1/(K+1) become class K.

``[audit] threshold_samples = true`` wraps the training loader (``with_threshold_samples``): the
shards and the validation set stay as they are; only the labels the trainer sees change, keyed
by a hash of the sample id (``threshold_fraction``), so a resumed run and a
second process pick exactly the same samples. The model gets K+1 outputs and the vocabulary one
more name; the dynamics record the extra label id, which is how the audit finds them again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import polars as pl
import torch

from pawpipe.train.config import AuditConfig
from pawpipe.train.data.batch import Batch, Loader

THRESHOLD_CLASS = "(threshold samples)"


def threshold_fraction(sample_ids: pl.Series, *, num_classes: int, subset: int, seed: int) -> pl.Series:
    """True for the samples a threshold-sample run moves to the extra class: a deterministic 1/(K+1).

    A sample's position in [0, 1) is a hash of (seed, sample_id); subset ``s`` takes
    ``[s / (K+1), (s+1) / (K+1))``, so subsets 0 and 1 are disjoint and stable across reruns.
    """
    width = 1.0 / (num_classes + 1)
    lo, hi = subset * width, (subset + 1) * width
    u = pl.Series([_unit(f"{seed}\0{s}") for s in sample_ids.to_list()], dtype=pl.Float64)
    return ((u >= lo) & (u < hi)).alias("threshold_sample")


def _unit(key: str) -> float:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


class ThresholdLoader:
    """A ``Loader`` whose batches carry ``extra_class`` for the samples of the chosen subset."""

    def __init__(self, inner: Loader, *, extra_class: int, subset: int, seed: int) -> None:
        self.inner, self.extra_class, self.subset, self.seed = inner, extra_class, subset, seed
        self.batch_size = inner.batch_size

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.inner:
            moved = threshold_fraction(
                pl.Series(batch.sample_ids, dtype=pl.String),
                num_classes=self.extra_class,
                subset=self.subset,
                seed=self.seed,
            )
            mask = torch.from_numpy(moved.to_numpy()).to(batch.labels.device)
            labels = torch.where(mask, torch.full_like(batch.labels, self.extra_class), batch.labels)
            yield Batch(images=batch.images, labels=labels, sample_ids=batch.sample_ids)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def with_threshold_samples(
    loader: Loader, vocabulary: list[str], class_weights: list[float] | None, audit: AuditConfig
) -> tuple[Loader, list[str], list[float] | None]:
    """The training loader, vocabulary and class weights of a threshold-sample run.

    The extra class's loss weight is the mean of the others (it holds about 1/(K+1) of the
    samples, drawn from every class alike).
    """
    if audit.threshold_subset > len(vocabulary):
        raise ValueError(f"audit.threshold_subset: expected 0..{len(vocabulary)}, got {audit.threshold_subset}")
    k = len(vocabulary)
    wrapped = ThresholdLoader(loader, extra_class=k, subset=audit.threshold_subset, seed=audit.threshold_seed)
    weights = None if class_weights is None else [*class_weights, sum(class_weights) / len(class_weights)]
    return wrapped, [*vocabulary, THRESHOLD_CLASS], weights
