"""Optimizer: AdamW (default) or Nesterov SGD, with no weight decay on norms and biases."""

from __future__ import annotations

import torch
from torch import nn

from pawpipe.train.config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights of convs/linears decay; 1-D tensors (norm scales/shifts, biases) do not.

    Frozen parameters are included too: they get no gradient and the optimizer skips them, so
    unfreezing after a warm-up needs no new optimizer.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "adamw":
        # The fused CUDA kernel updates all tensors in one launch; on the CPU the default (foreach) is used.
        fused = all(p.is_cuda for g in groups for p in g["params"]) or None
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
