"""The training objective: cross-entropy with per-class weights and label smoothing.

``ClassWeightedCE`` wraps ``nn.CrossEntropyLoss(weight=w, label_smoothing=eps)`` with
``reduction='none'`` and reduces it itself, exactly as PyTorch's ``'mean'`` does
(``sum_i l_i / sum_i w[y_i]``), so that one forward gives the batch loss for the update, the
per-sample losses for the training dynamics, and the numerator/denominator that evaluation sums
over the whole validation set.

On N ranks (DDP) the denominator is the **global** batch's weight total (one all-reduce), and the
rank's loss is scaled by N because DDP averages the gradients over ranks: the update is then the
one a single process makes on the concatenated global batch, whatever the class mix on each rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from pawpipe.train.fit.device import rank_and_world


class ClassWeightedCE(nn.Module):
    def __init__(self, class_weights: list[float] | torch.Tensor | None, *, label_smoothing: float) -> None:
        super().__init__()
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing, reduction="none")

    @property
    def weight(self) -> torch.Tensor | None:
        return self.ce.weight

    @property
    def label_smoothing(self) -> float:
        return self.ce.label_smoothing

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample losses ``l_i`` (weighted, smoothed) and the batch weight total ``sum_i w[y_i]``."""
        per_sample = self.ce(logits.float(), labels)
        if self.weight is None:
            total = torch.tensor(float(labels.numel()), device=logits.device)
        else:
            total = self.weight[labels].sum()
        return per_sample, total

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, *, global_batch: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch loss as PyTorch's ``reduction='mean'``, per-sample losses).

        ``global_batch``: on several ranks, normalise by the weight total of all ranks' batches and
        scale by the world size (module docstring); with one process it changes nothing.
        """
        per_sample, total = self.terms(logits, labels)
        scale = 1
        if global_batch:
            total, scale = global_sum(total.detach()), rank_and_world()[1]
        # A batch holding only zero-weight classes (absent from training) contributes nothing, not 0/0.
        loss = per_sample.sum() * scale / total.clamp_min(torch.finfo(torch.float32).tiny)
        return loss, per_sample


def global_sum(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over all ranks (itself on one process); gloo reduces on the host, NCCL on the GPU."""
    if rank_and_world()[1] == 1:
        return value
    where = value if dist.get_backend() == "nccl" or value.device.type == "cpu" else value.cpu()
    where = where.clone()
    dist.all_reduce(where)
    return where.to(value.device)


def plain_ce_and_margin(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted, unsmoothed ``-log p(y)`` and the logit margin ``z_y - max_{c != y} z_c`` per sample.

    These are the label-noise signals (small or negative margins and large losses flag suspicious
    labels); class weights and smoothing would blur them, so they are left out here.
    """
    logits = logits.detach().float()
    nll = nn.functional.cross_entropy(logits, labels, reduction="none")
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return nll, own - others
