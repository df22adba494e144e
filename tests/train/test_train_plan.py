import pytest
import torch
import torch.nn.functional as F

from pawpipe.train.fit.model import build_model
from pawpipe.train.plan import GiB, MiB, build_planner, parse_size, recommend


def _direct_saved_bytes(model, batch_size: int, image_size: int, dtype) -> int:
    """Independent measurement: distinct storages autograd saves in one forward + loss."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    model.train()
    x, y = torch.randn(batch_size, 3, image_size, image_size), torch.randint(0, 4, (batch_size,))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
    total = sum(storages.values())
    del loss, logits
    return total


@pytest.mark.parametrize("amp,dtype", [("off", None), ("bf16", torch.bfloat16)])
def test_plan_activations_match_a_direct_measurement(amp, dtype):
    model = build_model(4)
    planner = build_planner(num_classes=4, image_size=48, amp=amp, model=model)
    direct = _direct_saved_bytes(model, 7, 48, dtype)  # a batch size the planner never measured
    assert planner.activations.bytes(7) == pytest.approx(direct, rel=0.01)
    n = sum(p.numel() for p in model.parameters())
    assert planner.weights == 4 * n and planner.gradients == 4 * n and planner.optimizer == 8 * n  # AdamW: 2 states


def test_estimate_adds_up_and_recommendation_fits():
    planner = build_planner(num_classes=4, image_size=32, amp="bf16", ema=True)
    e = planner.estimate(64)
    parts = e.weights + e.gradients + e.optimizer + e.ema + e.activations + e.transient + e.input + e.workspace
    assert e.allocator_visible == parts
    assert e.total == parts + e.fragmentation + e.cuda_context + e.dali
    assert e.ema >= e.weights
    budget_gpu = e.total + 1 * MiB  # exactly enough for 64 (plus a bit), not for 96
    rec = recommend(planner, gpu_memory=int(budget_gpu / 0.9) + 1, headroom=0.1, effective_batch=256)
    assert rec.batch_size == 64 and rec.accumulate == 4 and rec.effective_batch == 256
    assert recommend(planner, gpu_memory=int(budget_gpu / 0.9) + 1, effective_batch=48).batch_size == 48
    assert recommend(planner, gpu_memory=MiB, effective_batch=64).batch_size is None
    # 96 fits but does not divide 256: 64 x 4 reaches 256 exactly (96 x 3 would be 288)
    roomier = int(planner.estimate(96).total / 0.9) + MiB
    rec = recommend(planner, gpu_memory=roomier, effective_batch=256)
    assert (rec.batch_size, rec.accumulate, rec.effective_batch) == (64, 4, 256)
    assert recommend(planner, gpu_memory=roomier, effective_batch=100).batch_size == 96  # no divisor fits: round up


def test_parse_size():
    assert parse_size("12GiB") == 12 * GiB
    assert parse_size("12 GB") == 12 * 10**9
    assert parse_size("11500MiB") == 11500 * MiB
    assert parse_size("12g") == 12 * GiB
    with pytest.raises(ValueError, match="12GiB"):
        parse_size("twelve")
