"""An in-memory ``Loader`` over tensors, and a learnable synthetic image set.

``TensorLoader`` implements the ``train.data.batch.Loader`` protocol with no decoding at all: it is the
"model alone" side of ``bench/train_bench.py`` (what the GPU does when data is free) and the data
source of the trainer's tests. Same rules as the real loaders: training shuffles per epoch from
the seed and drops the last partial batch; evaluation yields every sample once, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from pawpipe.train.data.batch import Batch


class TensorLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        sample_ids: list[str] | None = None,
        *,
        batch_size: int,
        train: bool,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if images.ndim != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"TensorLoader: expected images (N,3,H,W) and labels (N,), got {tuple(images.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if sample_ids is not None and len(sample_ids) != labels.shape[0]:
            raise ValueError(f"TensorLoader: expected {labels.shape[0]} sample ids, got {len(sample_ids)}")
        if train and labels.shape[0] < batch_size:
            raise ValueError(f"TensorLoader: {labels.shape[0]} samples cannot fill one training batch of {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.sample_ids = sample_ids if sample_ids is not None else [f"{i:08d}" for i in range(labels.shape[0])]
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.position = 0  # batches already yielded in the current epoch

    def __len__(self) -> int:
        n = self.labels.shape[0]
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def _order(self) -> torch.Tensor:
        n = self.labels.shape[0]
        if not self.train:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=generator)

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        for b in range(self.position, len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            self.position = b + 1
            on_device = index.to(self.device)
            yield Batch(
                images=self.images.index_select(0, on_device),
                labels=self.labels.index_select(0, on_device),
                sample_ids=[self.sample_ids[i] for i in index.tolist()],
            )
        self.position = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def synthetic_images(
    n: int, *, num_classes: int, image_size: int, seed: int = 0, noise: float = 1.0, pattern_seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` normalised images whose class shows as a colour cast plus a class-specific stripe pattern.

    The class patterns come from ``pattern_seed`` (shared by a train and a val set), the samples and
    their noise from ``seed``. Learnable in a few dozen steps at 32 px, so tiny training runs can
    show accuracy above chance.
    """
    colours = torch.randn(num_classes, 3, 1, 1, generator=torch.Generator().manual_seed(pattern_seed))
    ys = torch.arange(image_size).float()
    freq = (torch.arange(num_classes).float() + 1.0) * torch.pi / image_size
    stripes = torch.sin(freq[:, None, None] * ys[None, :, None] * 2).expand(num_classes, image_size, image_size)
    g = torch.Generator().manual_seed(1_000_003 + seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = torch.randn(n, 3, image_size, image_size, generator=g) * noise
    images += colours[labels] + stripes[labels][:, None]
    return images, labels, [f"syn-{seed}-{i:07d}" for i in range(n)]
