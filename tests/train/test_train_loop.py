import pytest
import torch

from pawpipe.train.config import OptimConfig
from pawpipe.train.data.synthetic import TensorLoader, synthetic_images
from pawpipe.train.fit.device import Precision
from pawpipe.train.fit.loss import ClassWeightedCE
from pawpipe.train.fit.model import build_model
from pawpipe.train.fit.optim import build_optimizer, param_groups
from pawpipe.train.fit.schedule import WarmupCosine
from pawpipe.train.fit.trainer import NonFiniteLossError, Trainer


def _trainer(steps: int, **kwargs) -> Trainer:
    model = build_model(3, drop_rate=0.0)
    return Trainer(
        model,
        optimizer=build_optimizer(model, OptimConfig(lr=1e-3)),
        loss_fn=ClassWeightedCE(None, label_smoothing=0.1),
        schedule=WarmupCosine(1e-3, 0.0, 0, steps),
        precision=Precision(None),
        device=torch.device("cpu"),
        channels_last=False,
        **kwargs,
    )


def _loader(poisoned_batches: set[int], n_batches: int = 3) -> TensorLoader:
    images, labels, ids = synthetic_images(4 * n_batches, num_classes=3, image_size=32)
    for b in poisoned_batches:
        images[4 * b] = float("nan")  # one bad image poisons the batch loss
    loader = TensorLoader(images, labels, ids, batch_size=4, train=False)  # fixed order: batch b is poisoned
    loader.train = True
    return loader


def test_a_nan_step_is_skipped_and_counted():
    trainer = _trainer(3)
    head = trainer.model.head.fc.weight
    seen: list[tuple[int, bool, bool]] = []

    def on_update(info):
        seen.append((info.step, info.skipped, bool(torch.isfinite(head).all())))

    before = head.detach().clone()
    trainer.train_epoch(_loader({1}), on_update=on_update)
    assert [s[:2] for s in seen] == [(1, False), (2, True), (3, False)]
    assert all(finite for *_, finite in seen)  # the NaN never reached the weights
    assert trainer.progress.nonfinite_total == 1 and trainer.progress.nonfinite_in_a_row == 0
    assert trainer.progress.step == 3 and not torch.equal(before, head)


def test_many_nan_steps_in_a_row_stop_the_run():
    trainer = _trainer(3, max_nonfinite_in_a_row=2)
    with pytest.raises(NonFiniteLossError, match="2 consecutive updates had a non-finite loss"):
        trainer.train_epoch(_loader({1, 2}))
    assert trainer.progress.nonfinite_total == 2


def test_accumulation_makes_one_update_per_group():
    trainer = _trainer(2, accumulate=2)
    updates = []
    trainer.train_epoch(_loader(set(), n_batches=3), on_update=lambda info: updates.append(info.batch_in_epoch))
    assert updates == [2, 3]  # 2 micro-batches, then a trailing group of 1
    assert trainer.progress.step == 2 and trainer.progress.samples_seen == 12


def test_no_weight_decay_on_norms_and_biases():
    model = build_model(3)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    assert any(p is model.head.norm.weight for p in no_decay["params"])
    assert any(p is model.head.fc.bias for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in model.parameters())
