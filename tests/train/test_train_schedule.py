import math

import pytest
import torch

from pawpipe.train.fit.schedule import WarmupCosine, optimizer_steps_per_epoch


def test_warmup_endpoints_and_cosine_end():
    s = WarmupCosine(lr=1e-3, min_lr=1e-5, warmup_steps=10, total_steps=110)
    assert s.lr_at(0) == pytest.approx(1e-4)  # the first update already moves
    assert s.lr_at(9) == pytest.approx(1e-3)  # warm-up ends exactly at the peak
    assert s.lr_at(109) == pytest.approx(1e-5)  # the last step is exactly min_lr
    assert s.lr_at(500) == pytest.approx(1e-5)


def test_every_step_follows_the_formula():
    s = WarmupCosine(lr=2.0, min_lr=0.5, warmup_steps=4, total_steps=24)
    expected = [2.0 * (k + 1) / 4 for k in range(4)]
    expected += [0.5 + 1.5 * 0.5 * (1 + math.cos(math.pi * (k - 4 + 1) / 20)) for k in range(4, 24)]
    assert [s.lr_at(k) for k in range(24)] == pytest.approx(expected)


def test_cosine_shape():
    s = WarmupCosine(lr=1.0, min_lr=0.0, warmup_steps=0, total_steps=1001)
    values = [s.lr_at(k) for k in range(1001)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay
    assert values[500] == pytest.approx(0.5, abs=2e-3)  # half-way is half the peak
    # symmetric around the midpoint: lr(t) + lr(T - t) = peak (+ min)
    assert values[250] + values[750] == pytest.approx(1.0, abs=2e-3)
    drops = [a - b for a, b in zip(values, values[1:])]
    assert drops[0] < drops[500] > drops[-1]  # slow, fast, slow


def test_apply_sets_each_group_per_step():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr_scale": 0.1}], lr=1.0)
    s = WarmupCosine(lr=1.0, min_lr=0.0, warmup_steps=2, total_steps=10)
    s.apply(opt, 0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
    s.apply(opt, 1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.0, 0.1])


def test_validation_and_steps_per_epoch():
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(lr=1.0, min_lr=0.0, warmup_steps=20, total_steps=10)
    assert optimizer_steps_per_epoch(10, 4) == 3  # 4 + 4 + a trailing group of 2
    curve = WarmupCosine(lr=1.0, min_lr=0.0, warmup_steps=3, total_steps=50).curve(points=5)
    assert {0, 2, 3, 49} <= {s for s, _ in curve}
