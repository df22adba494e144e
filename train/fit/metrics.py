"""Whole-set classification metrics from exact running totals, never from per-batch averages.

``MetricAccumulator`` sums a confusion matrix, the loss numerator/denominator and the plain NLL
over every batch (all-reduced across ranks when ``torch.distributed`` is initialised); metrics are
computed once from those totals. Averaging per-batch accuracies is what made the users' validation
numbers disagree with the leaderboard (MISSION.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from pawpipe.common.textwidth import columns, ljust


class MetricAccumulator:
    def __init__(self, num_classes: int, *, device: str | torch.device = "cpu") -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)  # [true, pred]
        # float64 sums: 2 M samples of ~1e0 losses keep ~1e-10 relative precision.
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss numerator, loss weight total, plain NLL

    @torch.no_grad()
    def update(
        self,
        labels: torch.Tensor,
        preds: torch.Tensor,
        *,
        loss_terms: torch.Tensor | None = None,
        weight_total: torch.Tensor | float | None = None,
        nll: torch.Tensor | None = None,
    ) -> None:
        """Add a batch: true and predicted ids, per-sample objective terms and their weight total, plain NLL."""
        k = self.num_classes
        index = labels.to(self.confusion.device, torch.int64) * k + preds.to(self.confusion.device, torch.int64)
        self.confusion += torch.bincount(index, minlength=k * k).view(k, k)
        if loss_terms is not None:
            self.sums[0] += loss_terms.detach().double().sum().to(self.sums.device)
            total = weight_total if weight_total is not None else float(labels.numel())
            self.sums[1] += torch.as_tensor(total, dtype=torch.float64).to(self.sums.device)
        if nll is not None:
            self.sums[2] += nll.detach().double().sum().to(self.sums.device)

    def all_reduce(self) -> None:
        """Sum the totals over ranks (no-op without an initialised process group)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.confusion)
            dist.all_reduce(self.sums)

    def compute(self, vocabulary: list[str] | None = None) -> dict[str, Any]:
        return metrics_from_confusion(
            self.confusion.cpu(),
            loss_sum=float(self.sums[0]),
            weight_total=float(self.sums[1]),
            nll_sum=float(self.sums[2]),
            vocabulary=vocabulary,
        )


def metrics_from_confusion(
    confusion: torch.Tensor,
    *,
    loss_sum: float = 0.0,
    weight_total: float = 0.0,
    nll_sum: float = 0.0,
    vocabulary: list[str] | None = None,
) -> dict[str, Any]:
    """Loss, accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Macro averages run over the classes that occur as a label or a prediction (scikit-learn's
    default label set); a class never predicted has precision 0 (``zero_division=0``).
    """
    cm = confusion.to(torch.float64)
    k = cm.shape[0]
    names = vocabulary if vocabulary is not None else [str(i) for i in range(k)]
    count = int(cm.sum())
    tp = cm.diagonal()
    support, predicted = cm.sum(dim=1), cm.sum(dim=0)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(tp))
    present = (support > 0) | (predicted > 0)
    n_present = int(present.sum())
    return {
        "count": count,
        "loss": loss_sum / weight_total if weight_total > 0 else float("nan"),
        "nll": nll_sum / count if count else float("nan"),
        "accuracy": float(tp.sum() / count) if count else float("nan"),
        "macro_f1": float(f1[present].sum() / n_present) if n_present else float("nan"),
        "macro_recall": float(recall[present].sum() / n_present) if n_present else float("nan"),
        "per_class": {
            names[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(k)
        },
        "confusion": confusion.to(torch.int64).tolist(),
    }


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation (no per-class table, no confusion matrix): what checkpoints,
    ``status.json`` and the run's evaluation history keep."""
    return {k: metrics[k] for k in ("count", "loss", "nll", "accuracy", "macro_f1", "macro_recall") if k in metrics}


def format_metrics(metrics: dict) -> str:
    """``train eval``'s table: the totals, per class precision/recall/F1/support (names padded by
    terminal columns), and the confusion matrix."""
    width = max([24, *map(columns, metrics["per_class"])])  # terminal columns: a Korean class name's syllables take two
    lines = [
        f"samples {metrics['count']}  loss {metrics['loss']:.4f}  nll {metrics['nll']:.4f}  accuracy "
        f"{metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  macro-recall {metrics['macro_recall']:.4f}",
        f"{ljust('class', width)} {'precision':>9} {'recall':>7} {'f1':>7} {'support':>8}",
    ]
    for name, c in metrics["per_class"].items():
        lines.append(
            f"{ljust(name, width)} {c['precision']:>9.4f} {c['recall']:>7.4f} {c['f1']:>7.4f} {c['support']:>8d}"
        )
    lines.append("confusion matrix (rows: label, columns: prediction, vocabulary order):")
    lines.extend("  " + " ".join(f"{v:>6d}" for v in row) for row in metrics["confusion"])
    return "\n".join(lines)
