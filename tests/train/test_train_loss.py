import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pawpipe.common.contracts.labels_file import class_weights
from pawpipe.train.config import OptimConfig
from pawpipe.train.data.dataset import read_dataset_info
from pawpipe.train.data.synthetic import TensorLoader
from pawpipe.train.fit.device import Precision
from pawpipe.train.fit.loss import ClassWeightedCE, plain_ce_and_margin
from pawpipe.train.fit.model import build_model
from pawpipe.train.fit.optim import build_optimizer
from pawpipe.train.fit.schedule import WarmupCosine
from pawpipe.train.fit.trainer import Trainer


def _hand_loss(logits, labels, w, eps):
    """sum_i [(1-eps) w_y (-log p_iy) + eps/K sum_c w_c (-log p_ic)] / sum_i w_y (PyTorch's 'mean')."""
    k = logits.shape[1]
    num = den = 0.0
    for row, y in zip(logits.tolist(), labels.tolist()):
        lse = math.log(sum(math.exp(v) for v in row))
        nlp = [lse - v for v in row]
        num += (1 - eps) * w[y] * nlp[y] + eps / k * sum(w[c] * nlp[c] for c in range(k))
        den += w[y]
    return num / den


def test_class_weights_and_smoothing_match_a_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 2, 1, 2])
    w = [0.5, 2.0, 1.5]
    loss, per_sample = ClassWeightedCE(w, label_smoothing=0.1)(logits, labels)
    assert float(loss) == pytest.approx(_hand_loss(logits, labels, w, 0.1), rel=1e-6)
    reference = nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.1)(logits, labels)
    assert float(loss) == pytest.approx(float(reference), rel=1e-6)
    assert per_sample.shape == (4,)
    # both knobs matter: without them the value differs
    assert float(ClassWeightedCE(None, label_smoothing=0.0)(logits, labels)[0]) != pytest.approx(float(loss), rel=1e-3)


def test_plain_ce_and_margin():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    nll, margin = plain_ce_and_margin(logits, torch.tensor([0, 1]))
    assert margin.tolist() == [2.0, -3.0]
    assert nll[0] == pytest.approx(-torch.log_softmax(logits, 1)[0, 0])


def test_dataset_info_weights(tmp_path: Path):
    doc = {
        "labels": ["a", "b", "c"],
        "class_weights": {"balanced": [0.5, 1.0, 2.0], "effective_number_beta": 0.99},
        "counts": {"train": {"written": 14, "per_class": [8, 4, 2]}},
        "image": {"size": 256},
        "pixel_stats": {"mean": [120, 110, 100], "std": [60, 60, 60]},
    }
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    (tmp_path / "val").mkdir()
    info = read_dataset_info(tmp_path / "val")  # from a split folder: dataset.json is in the parent
    assert info.vocabulary == ["a", "b", "c"] and info.image_size == 256
    assert info.weights("balanced") == [0.5, 1.0, 2.0]  # stored list wins
    assert info.weights("effective_number") == pytest.approx(class_weights([8, 4, 2], "effective_number", beta=0.99))
    assert info.weights("none") is None


def test_dataset_info_of_a_bad_file_is_one_line(tmp_path: Path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": ["a", "b"], "class_weights": {"balanced": "high"}}))
    with pytest.raises(ValueError) as caught:
        read_dataset_info(tmp_path)
    assert (
        str(caught.value) == f"{tmp_path / 'dataset.json'}: class_weights.balanced: expected a valid list, got 'high'"
    )


def test_weights_and_smoothing_reach_the_training_loss():
    torch.manual_seed(0)
    model = build_model(3, drop_rate=0.0)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 2])
    w = [3.0, 1.0, 0.25]
    reference = build_model(3, drop_rate=0.0)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = _hand_loss(reference.train()(images), labels, w, 0.2)
    trainer = Trainer(
        model,
        optimizer=build_optimizer(model, OptimConfig(lr=1e-9)),
        loss_fn=ClassWeightedCE(w, label_smoothing=0.2),
        schedule=WarmupCosine(1e-9, 0.0, 0, 1),
        precision=Precision(None),
        device=torch.device("cpu"),
        channels_last=False,
    )
    trainer.train_epoch(TensorLoader(images, labels, batch_size=4, train=True))
    assert trainer.take_running()["train_loss"] == pytest.approx(expected, rel=1e-4)
