import pytest
import torch
from torch import nn

from pawpipe.train.data.synthetic import TensorLoader
from pawpipe.train.fit.evaluate import evaluate
from pawpipe.train.fit.loss import ClassWeightedCE
from pawpipe.train.fit.metrics import MetricAccumulator, metrics_from_confusion


class LogitsFromPixels(nn.Module):
    """A 'model' whose logits are its input pixels: images (N, K, 1, 1) -> logits (N, K)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2, 1, 0]
PREDS = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1, 0]


def _hand_metrics():
    k = 3
    cm = [[sum(1 for y, p in zip(LABELS, PREDS) if (y, p) == (i, j)) for j in range(k)] for i in range(k)]
    precision = [cm[c][c] / sum(cm[r][c] for r in range(k)) for c in range(k)]
    recall = [cm[c][c] / sum(cm[c]) for c in range(k)]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    accuracy = sum(cm[c][c] for c in range(k)) / len(LABELS)
    return cm, precision, recall, f1, accuracy


def test_confusion_metrics_equal_a_hand_computation():
    cm, precision, recall, f1, accuracy = _hand_metrics()
    m = metrics_from_confusion(torch.tensor(cm), vocabulary=["a", "b", "c"])
    assert m["confusion"] == cm
    assert m["accuracy"] == pytest.approx(accuracy)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert [m["per_class"][n]["precision"] for n in "abc"] == pytest.approx(precision)
    assert [m["per_class"][n]["recall"] for n in "abc"] == pytest.approx(recall)
    assert [m["per_class"][n]["support"] for n in "abc"] == [4, 3, 4]


def test_whole_set_metrics_differ_from_per_batch_averages():
    """Batches of 4, 4, 3: averaging per-batch accuracy or loss is not the whole-set value."""
    k = 3
    torch.manual_seed(1)
    logits = torch.randn(len(LABELS), k)
    logits[torch.arange(len(LABELS)), torch.tensor(PREDS)] += 10.0  # argmax = PREDS
    labels = torch.tensor(LABELS)
    loader = TensorLoader(logits[:, :, None, None], labels, batch_size=4, train=False)
    w = [1.0, 2.0, 0.5]
    loss_fn = ClassWeightedCE(w, label_smoothing=0.1)
    m = evaluate(LogitsFromPixels(), loader, loss_fn=loss_fn, vocabulary=["a", "b", "c"], device=torch.device("cpu"))

    _, _, _, f1, accuracy = _hand_metrics()
    whole_loss = float(nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.1)(logits, labels))
    assert m["count"] == 11
    assert m["accuracy"] == pytest.approx(accuracy)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["loss"] == pytest.approx(whole_loss, rel=1e-6)
    assert m["nll"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)), rel=1e-6)

    batches = [slice(0, 4), slice(4, 8), slice(8, 11)]
    per_batch_acc = sum((logits[b].argmax(1) == labels[b]).float().mean() for b in batches) / 3
    per_batch_loss = (
        sum(nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.1)(logits[b], labels[b]) for b in batches) / 3
    )
    assert float(per_batch_acc) != pytest.approx(m["accuracy"], abs=1e-3)
    assert float(per_batch_loss) != pytest.approx(m["loss"], abs=1e-3)


def test_accumulator_macro_average_skips_absent_classes():
    acc = MetricAccumulator(4)
    acc.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]))
    m = acc.compute()
    # class 2 and 3 never occur as label or prediction: macro-F1 averages over classes 0 and 1 only
    assert m["macro_f1"] == pytest.approx((2 * 0.5 * 1 / 1.5 + 2 * 1 * 0.5 / 1.5) / 2)
    assert m["per_class"]["3"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def _rank_worker(rank: int, world: int, init_file: str, out: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
    import json

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        mine = slice(0, 7) if rank == 0 else slice(7, None)  # unequal shares, as the last batch leaves them
        loader = TensorLoader(logits[mine, :, None, None], labels[mine], batch_size=3, train=False)
        m = evaluate(
            LogitsFromPixels(),
            loader,
            loss_fn=ClassWeightedCE([1.0, 2.0, 0.5], label_smoothing=0.1),
            vocabulary=["a", "b", "c"],
            device=torch.device("cpu"),
        )
        if rank == 0:
            with open(out, "w") as f:
                json.dump(m, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_metrics_are_exact_across_ranks(tmp_path):
    """Two gloo ranks, each with part of the set: the all-reduced totals give the one-process metrics."""
    import json

    import torch.multiprocessing as mp

    torch.manual_seed(2)
    logits, labels = torch.randn(len(LABELS), 3), torch.tensor(LABELS)
    out = tmp_path / "rank0.json"
    mp.spawn(_rank_worker, args=(2, str(tmp_path / "init"), str(out), logits, labels), nprocs=2, join=True)
    together = json.loads(out.read_text())
    alone = evaluate(
        LogitsFromPixels(),
        TensorLoader(logits[:, :, None, None], labels, batch_size=4, train=False),
        loss_fn=ClassWeightedCE([1.0, 2.0, 0.5], label_smoothing=0.1),
        vocabulary=["a", "b", "c"],
        device=torch.device("cpu"),
    )
    assert together["confusion"] == alone["confusion"] and together["count"] == 11
    for key in ("loss", "nll", "accuracy", "macro_f1"):
        assert together[key] == pytest.approx(alone[key], rel=1e-9), key
