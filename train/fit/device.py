"""Where and how the math runs: device, mixed precision, seeds, and this process's rank."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when visible, else the CPU. Under torchrun, ``auto``/``cuda`` mean this process's
    GPU (``cuda:$LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"compute.device={name!r}: no CUDA device is visible to PyTorch")
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: full fp32) and whether fp16 needs a gradient scaler."""

    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def scaler(self) -> bool:
        return self.dtype is torch.float16

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """``auto``: bf16 on a CUDA device that supports it (Ampere+, e.g. the users' RTX 3060), else fp16
    with a grad scaler; on the CPU full fp32 (CPU autocast is slower than fp32 on most CPUs)."""
    if amp == "off":
        return Precision(None)
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeError(f"compute.amp=bf16: {torch.cuda.get_device_name(device)} does not support bfloat16")
        return Precision(torch.bfloat16)
    if amp == "fp16":
        return Precision(torch.float16)
    if device.type != "cuda":
        return Precision(None)
    return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices) from one value; loaders get the same seed explicitly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:
        # Fixed input size: cuDNN's autotuner picks the fastest kernels once.
        torch.backends.cudnn.benchmark = True


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s own random draws (dropout, drop-path, augmentation): ``seed`` itself on
    rank 0, so a single process is unchanged; a different, reproducible one on every other rank, so
    the ranks do not all draw the same masks and crops."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0] & 0x7FFFFFFF)


def resolve_sync_bn(setting: bool | str, *, device: torch.device, world_size: int, batch_size: int) -> bool:
    """``compute.sync_bn``: ``auto`` is on for several ranks on CUDA with a per-rank batch below 32 (too
    few samples for stable BatchNorm statistics per rank); ``true`` on the CPU is refused because
    PyTorch's SyncBatchNorm runs only on GPUs."""
    if world_size == 1:
        return False
    if setting == "auto":
        return device.type == "cuda" and batch_size < 32
    if setting and device.type != "cuda":
        raise ValueError(
            f"compute.sync_bn=true: PyTorch's SyncBatchNorm needs CUDA devices, got {device}; "
            "set compute.sync_bn=false (or auto) on the CPU"
        )
    return bool(setting)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class Placement:
    """Where and how this process trains, decided once per run (``resolve_placement``): the device, the
    precision, and which of the ``world`` processes this is."""

    device: torch.device
    precision: Precision
    rank: int = 0
    world: int = 1

    @property
    def half_images(self) -> bool:
        """Half-precision images only where the model runs under autocast on a GPU (halves the copy)."""
        return self.device.type == "cuda" and self.precision.dtype is not None


def resolve_placement(device: str, amp: str) -> Placement:
    """``compute.device`` and ``compute.amp`` resolved, with this process's rank (after
    ``init_distributed``)."""
    target = resolve_device(device)
    rank, world = rank_and_world()
    return Placement(target, resolve_precision(amp, target), rank, world)


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def init_distributed(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment):
    NCCL when this process trains on a GPU, gloo otherwise. True when this call created the group
    (the caller destroys it); False on a single process or when a group already exists."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    target = resolve_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return True


def broadcast_object(obj: object, *, src: int = 0) -> object:
    """``obj`` as rank ``src`` has it, on every rank (a no-op on a single process)."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` on a single process)."""
    world = rank_and_world()[1]
    if world == 1:
        return [obj]
    out: list[object] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def any_rank(flags: list[bool], *, device: torch.device) -> list[bool]:
    """Each flag true on any rank (one small all-reduce; a no-op on a single process), so every rank
    takes the same decision, e.g. to checkpoint and stop at the same step."""
    if rank_and_world()[1] == 1:
        return list(flags)
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=where)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]
