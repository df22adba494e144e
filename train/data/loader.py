"""The training loader's front door, and the shard plan both loaders follow.

``open_loader`` opens a ``SHARDS/<split>`` folder as a ``LoaderSpec`` says and returns the DALI loader
(``train.data.loader_dali``) or its plain-PyTorch twin (``train.data.loader_torch``); both implement
``train.data.batch.Loader`` with the same transforms (``train.data.transforms``) and the same plan:

* ``ShardSet``: the split's tars and DALI index files, checked when opened (missing files, a tar
  or index that no longer matches ``shards.parquet``, a stale index; a shard that passed and has
  not changed since is not checked again: ``train.data.check_cache``), and the key -> sample_id map.
* ``EpochPlan``: which samples rank r reads in epoch e. Training visits the shards in an order
  drawn from ``(seed, epoch)`` (the same on every rank); the concatenated samples are cut into
  ``world_size`` contiguous ranges, ``[N*r//W, N*(r+1)//W)``, the partition DALI's
  ``shard_id/num_shards`` makes, so the ranks' samples are disjoint and complete. Training yields
  ``(N // W) // batch_size`` full batches on every rank (the same count everywhere, so no rank
  waits at the epoch's end; the partial last batch is dropped, the users' NaN lesson);
  evaluation reads the shards in name order and yields each of the rank's samples once, the last
  batch possibly partial (the model is in eval mode then, so BatchNorm never sees a batch of one
  in train mode).

Failure policy: the loader fails loudly. Shards were checked when built (``shards verify``), so
a missing file, a stale index or an undecodable sample at training time means the folder changed
on disk; the error names the shard and key, and nothing is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pawpipe.train.config import DataConfig
from pawpipe.train.data.batch import Loader
from pawpipe.train.data.dataset import read_dataset_info
from pawpipe.train.data.shardset import (  # noqa: F401  (the plan's names, for the loaders' users)
    EpochPlan,
    Piece,
    ShardFile,
    ShardSet,
    check_shard,
    check_state,
    index_keys,
    loader_state,
    rank_range,
    read_index_keys,
)
from pawpipe.train.data.transforms import DATA_DEFAULTS, transform_spec

BACKENDS = ("auto", "dali", "torch")
DEFAULT_SHUFFLE_BUFFER = 4096  # encoded samples per pipeline; x ~35 kB at 256 px q90 = ~140 MB
# --- the factory ------------------------------------------------------------------------------


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``dali`` where it imports, else ``torch``; ``dali`` without DALI is an error."""
    if backend not in BACKENDS:
        raise ValueError(f"loader backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "dali" if dali_available() else "torch"
    if backend == "dali" and not dali_available():
        raise RuntimeError("loader backend 'dali': nvidia-dali is not installed; install it or use --loader torch")
    return backend


@dataclass(frozen=True)
class LoaderSpec:
    """What a loader reads and how, in one value: ``resolve_data_config`` makes it from a ``DataConfig``
    (``train run/eval/predict``); tests and benches write one by hand.

    ``backend``: "auto", "dali" or "torch" (``resolve_backend``). ``workers``: DALI CPU threads, or
    DataLoader worker processes for the twin. ``decode``: "auto" decodes on the loader's device,
    "cpu" forces CPU decoding. ``shuffle_buffer``: encoded samples per pipeline.
    """

    train: bool
    batch_size: int
    image_size: int
    backend: str = "auto"
    workers: int = 4
    scale: tuple[float, float] = DATA_DEFAULTS.scale
    jitter: float = DATA_DEFAULTS.jitter
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    decode: str = "auto"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.train and self.batch_size < 2):
            raise ValueError(
                f"batch_size: expected at least {2 if self.train else 1} (BatchNorm in train mode needs 2), "
                f"got {self.batch_size}"
            )
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer: expected at least 1 sample, got {self.shuffle_buffer}")
        if self.decode not in ("auto", "cpu"):
            raise ValueError(f"decode: expected 'auto' or 'cpu', got {self.decode!r}")


def open_loader(
    split_dir: str | Path,
    spec: LoaderSpec,
    *,
    device: str,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    amp: bool = False,
    normalize: dict[str, Any] | None = None,
) -> Loader:
    """The loader's one door: a ``Loader`` over ``split_dir`` (``SHARDS/<split>``), DALI or its PyTorch
    twin, reading as ``spec`` says; see the module docstring for the plan.

    ``device`` is "cpu" or "cuda[:N]". ``rank``/``world_size``: which of the processes this is (the
    caller knows; the loader does not ask ``torch.distributed``). ``amp``: float16 images when they are
    produced on a GPU. ``normalize``: ``{"mean", "std"}`` (0-255 scale), e.g. what a checkpoint was
    trained with or what the caller already read from ``dataset.json``; None (or a None inside):
    ``dataset.json``'s pixel statistics, else ImageNet's.
    """
    split_dir = Path(split_dir)
    backend = resolve_backend(spec.backend)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    shards = ShardSet.open(split_dir)
    if shards.total < world_size:
        raise ValueError(f"{split_dir}: {shards.total} samples cannot be split over {world_size} ranks")
    batch_size = spec.batch_size
    if spec.train and shards.batches(train=True, batch_size=batch_size, rank=rank, world_size=world_size) == 0:
        raise ValueError(
            f"{split_dir}: {shards.total} samples over {world_size} rank(s) cannot fill one training batch of "
            f"{batch_size}"
        )
    mean, std = (normalize["mean"], normalize["std"]) if normalize is not None else (None, None)
    if mean is None or std is None:
        mean, std = _dataset_stats(split_dir, mean, std)
    transform = transform_spec(
        train=spec.train,
        image_size=spec.image_size,
        scale=spec.scale,
        jitter=spec.jitter,
        mean=mean,
        std=std,
        half=amp and device.startswith("cuda"),
    )
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
        "workers": spec.workers,
        "device": device,
        "shuffle_buffer": spec.shuffle_buffer,
    }
    if backend == "dali":
        from pawpipe.train.data.loader_dali import DaliLoader

        return DaliLoader(shards, transform, decode=spec.decode, **common)
    from pawpipe.train.data.loader_torch import TorchLoader

    return TorchLoader(shards, transform, **common)


def resolve_data_config(data: DataConfig, *, train: bool, batch_size: int | None = None) -> LoaderSpec:
    """What a ``DataConfig`` decides about a loader, resolved in one place (as timm's ``resolve_data_config``):
    the ``LoaderSpec`` of the training split (``train=True``) or of an evaluated one.

    ``batch_size``: an explicit one (``train eval --batch-size``), else ``data.batch_size`` for
    training and ``data.eval_batch_size`` (0: ``data.batch_size``) for evaluation.
    """
    batch_size = batch_size or (data.batch_size if train else data.eval_batch_size or data.batch_size)
    return LoaderSpec(
        train=train,
        batch_size=batch_size,
        image_size=data.image_size,
        backend=data.loader,
        workers=data.workers,
        scale=data.scale,
        jitter=data.jitter,
    )


def _dataset_stats(split_dir: Path, mean: Any, std: Any) -> tuple[Any, Any]:
    """Fill missing mean/std from ``dataset.json`` (0-255 scale); None stays None (ImageNet's)."""
    try:
        info = read_dataset_info(split_dir)
    except FileNotFoundError:
        return mean, std
    return (info.mean if mean is None else mean), (info.std if std is None else std)
