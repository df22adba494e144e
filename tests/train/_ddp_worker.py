"""One rank of the DDP equivalence checks, run by ``torchrun --nproc-per-node 2`` from
``test_train_ddp.py`` (gloo, CPU). Usage: ``_ddp_worker.py SHARDS OUT``.

It writes ``OUT/rank{r}.pt`` with:

* ``grads``: the all-reduced gradient of one ``Trainer`` micro-step on this rank's half of four
  fixed samples (model in eval mode: BatchNorm on running statistics, no dropout: the maths is then
  exactly one process's);
* ``checksums``: a digest of every parameter after every optimizer update of one epoch on the
  real DALI loader (this rank's part), with the first backbone groups frozen for the first steps;
* ``samples``: the sample ids this rank trained on in that epoch;
* ``skipped``/``nonfinite_total``: the update decisions when only rank 1's batch is poisoned with
  a NaN under fp16 (grad scaler on), and the step at which the ranks stopped.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from pawpipe.train.config import OptimConfig
from pawpipe.train.data.batch import Batch
from pawpipe.train.data.loader import LoaderSpec, open_loader
from pawpipe.train.fit.checkpoint import TrainProgress
from pawpipe.train.fit.device import Precision, rank_seed, seed_everything
from pawpipe.train.fit.loss import ClassWeightedCE
from pawpipe.train.fit.model import build_model
from pawpipe.train.fit.optim import build_optimizer
from pawpipe.train.fit.schedule import WarmupCosine
from pawpipe.train.fit.trainer import Trainer

WEIGHTS = [0.5, 2.0, 1.0, 3.0, 1.0, 1.0]


def fixed_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """Four images and labels, identical on every rank and in the test (rank r gets rows 2r, 2r+1)."""
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(4, 3, 32, 32, generator=generator)
    return images, torch.tensor([0, 0, 1, 3])


def make_trainer(*, freeze_bn: bool, drop_rate: float, precision: Precision = Precision(None), **options) -> Trainer:
    torch.manual_seed(0)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
    model = build_model(6, drop_rate=drop_rate, freeze_bn=freeze_bn)
    return Trainer(
        model,
        optimizer=build_optimizer(model, OptimConfig(lr=1e-3)),
        loss_fn=ClassWeightedCE(WEIGHTS, label_smoothing=0.1),
        schedule=WarmupCosine(lr=1e-3, min_lr=1e-6, warmup_steps=1, total_steps=100),
        precision=precision,
        device=torch.device("cpu"),
        progress=TrainProgress(),
        **options,
    )


def gradient(trainer: Trainer, rows: slice) -> dict[str, torch.Tensor]:
    images, labels = fixed_samples()
    trainer.model.eval()  # every BatchNorm (the head's too) on its running statistics: no per-batch terms
    trainer._forward_backward(
        Batch(images[rows], labels[rows], [f"s{i}" for i in range(4)][rows]), group_size=1, sync=True, dynamics=None
    )
    return {name: p.grad.detach().clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


def digest(model: torch.nn.Module) -> str:
    """The parameters' bytes (BatchNorm running statistics are per rank without SyncBatchNorm; DDP
    broadcasts rank 0's before every forward, and evaluation uses rank 0's)."""
    h = hashlib.sha256()
    for name, tensor in model.named_parameters():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


class Poisoned:
    """The real loader, with one batch of one rank replaced by NaN pixels (a hostile sample)."""

    def __init__(self, loader, *, rank: int, poison_rank: int, poison_batch: int) -> None:
        self.loader, self.poison = loader, rank == poison_rank
        self.poison_batch, self.batch_size = poison_batch, loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for index, batch in enumerate(self.loader):
            if self.poison and index == self.poison_batch:
                batch = Batch(torch.full_like(batch.images, float("nan")), batch.labels, batch.sample_ids)
            yield batch


def main(shards: Path, out: Path) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank, world = dist.get_rank(), dist.get_world_size()
    result: dict = {}

    trainer = make_trainer(freeze_bn=True, drop_rate=0.0)
    result["grads"] = gradient(trainer, slice(2 * rank, 2 * rank + 2))

    seed_everything(rank_seed(3, rank))
    loader = open_loader(
        shards / "train",
        LoaderSpec(train=True, batch_size=2, image_size=32, backend="dali", workers=1),
        device="cpu",
        seed=3,
        rank=rank,
        world_size=world,
    )
    loader.set_epoch(0)
    trainer = make_trainer(freeze_bn=False, drop_rate=0.2, freeze_groups=3, freeze_steps=2)
    checksums, samples = [], []

    class Recording:
        def __iter__(self):
            for batch in loader:
                samples.extend(batch.sample_ids)
                yield batch

        def __len__(self):
            return len(loader)

    trainer.train_epoch(Recording(), on_update=lambda info: checksums.append(digest(trainer.model)))
    result["checksums"], result["samples"] = checksums, samples
    result["frozen_at_end"] = trainer.model._frozen_groups

    loader.set_epoch(1)
    trainer = make_trainer(freeze_bn=False, drop_rate=0.2, precision=Precision(torch.float16))
    skipped: list[bool] = []
    trainer.train_epoch(
        Poisoned(loader, rank=rank, poison_rank=1, poison_batch=1), on_update=lambda info: skipped.append(info.skipped)
    )
    result["skipped"], result["nonfinite_total"] = skipped, trainer.progress.nonfinite_total
    result["after_nan"] = digest(trainer.model)

    torch.save(result, out / f"rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
