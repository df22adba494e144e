"""Where and how the math runs: device, mixed precision, seeds, and this process's rank."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0
