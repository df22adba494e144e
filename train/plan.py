"""``train plan``: will a batch size fit the GPU, and what does the learning-rate curve look like? (``plan``)

Peak training memory for batch size ``b`` is estimated from the real model:

* **static** (measured from the model): fp32 weights, fp32 gradients of trainable weights,
  optimizer state (AdamW: 2 fp32 tensors per weight; SGD with momentum: 1), an EMA copy when enabled;
* **activations** (measured): every tensor autograd saves for backward, captured with
  ``torch.autograd.graph.saved_tensors_hooks`` during one real forward + loss on the CPU, under the
  same autocast dtype (CPU autocast applies the same lower-precision op list, to conv and linear,
  as CUDA's), counted once per storage and excluding the parameters themselves. Saved bytes are
  ``a0 + a1 * b`` (a0: per-channel BatchNorm statistics, autocast weight copies), so they are
  measured at two small batch sizes and extrapolated; the test checks the line against a
  direct measurement;
* **transient**: while backward runs, the gradient of the largest activation and the tensor it
  is computed from are alive next to the saved ones: 2 x the largest saved tensor; plus the fp32
  input batch;
* **allowances** (not measurable on the CPU; override with the ``--*-mib`` options):
  ``CUDA_CONTEXT_MIB`` for the CUDA context and the kernels of torch/cuDNN/cuBLAS (invisible to
  ``torch.cuda.max_memory_allocated``; ``--measure`` prints the real value on the device),
  ``WORKSPACE_MIB`` for cuDNN convolution and cuBLAS workspaces (cuBLASLt uses 1 MiB per handle on
  small Ampere cards, 4 MiB for cuBLAS; cuDNN's autotuner may pick algorithms with larger
  workspaces and falls back to smaller ones when allocation fails), ``FRAGMENTATION`` of the
  caching allocator (its 2 MiB/20 MiB block rounding), and DALI: ``prefetch_queue_depth + 1``
  batches of decoded uint8 images at the stored resolution plus the float output batch, and
  ``DALI_FIXED_MIB`` for nvJPEG state and DALI's memory pools (DALI user guide, "Performance
  Tuning: Memory Consumption": buffers grow to the largest batch seen and are not released).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pawpipe.train.config import ConfigError, OptimConfig, TrainConfig
from pawpipe.train.data.loader_dali import PREFETCH_DEPTH
from pawpipe.train.fit.loss import ClassWeightedCE
from pawpipe.train.fit.model import build_model, place_model
from pawpipe.train.fit.optim import build_optimizer

log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
CUDA_CONTEXT_MIB = 600
WORKSPACE_MIB = 256
FRAGMENTATION = 0.10  # of the batch-dependent (activation + transient) bytes
DALI_FIXED_MIB = 256
CANDIDATE_BATCHES = (8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512)


def parse_size(text: str) -> int:
    """``"12GiB"``, ``"12 GB"``, ``"11500MiB"``, ``"12g"`` -> bytes (GB = 10^9, GiB and bare G = 2^30)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?)([bB]?)\s*", text)
    if not match:
        raise ValueError(f"memory size: expected e.g. 12GiB or 11500MiB, got {text!r}")
    value, unit, binary, byte = match.groups()
    power = "kmgt".find(unit.lower()) + 1 if unit else 0
    base = 1000 if (byte and not binary and unit) else 1024
    return int(float(value) * base**power)


@dataclass(frozen=True)
class SavedActivations:
    batch_size: int
    bytes: int  # distinct storages saved for backward, parameters excluded
    largest: int  # the largest single saved storage
    tensors: int


def measure_saved_activations(
    model: nn.Module, *, batch_size: int, image_size: int, dtype: torch.dtype | None, num_classes: int | None = None
) -> SavedActivations:
    """Bytes autograd keeps for backward after one training-mode forward + loss, on the CPU."""
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}
    count = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        count[0] += 1
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_storages and ptr != 0:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    was_training = model.training
    model.train()
    num_classes = num_classes or model.get_classifier().out_features
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    loss_fn = ClassWeightedCE(torch.ones(num_classes), label_smoothing=0.1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(images)
        loss, _ = loss_fn(logits, labels)
    result = SavedActivations(batch_size, sum(seen.values()), max(seen.values(), default=0), count[0])
    del loss, logits
    model.train(was_training)
    return result


@dataclass(frozen=True)
class ActivationModel:
    """Saved-activation bytes as a line in the batch size, from two measurements."""

    intercept: float
    per_sample: float
    largest_per_sample: float

    def bytes(self, batch_size: int) -> int:
        return int(round(self.intercept + self.per_sample * batch_size))

    def largest(self, batch_size: int) -> int:
        return int(round(self.largest_per_sample * batch_size))


def fit_activations(
    model: nn.Module, *, image_size: int, dtype: torch.dtype | None, sizes: tuple[int, int] = (2, 3)
) -> ActivationModel:
    a, b = (measure_saved_activations(model, batch_size=s, image_size=image_size, dtype=dtype) for s in sizes)
    slope = (b.bytes - a.bytes) / (b.batch_size - a.batch_size)
    return ActivationModel(a.bytes - slope * a.batch_size, slope, b.largest / b.batch_size)


@dataclass(frozen=True)
class Estimate:
    batch_size: int
    weights: int
    gradients: int
    optimizer: int
    ema: int
    activations: int
    transient: int
    input: int
    workspace: int
    fragmentation: int
    cuda_context: int
    dali: int

    @property
    def allocator_visible(self) -> int:
        """What ``torch.cuda.max_memory_allocated`` should report (no context, no DALI, no fragmentation)."""
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.ema
            + self.activations
            + self.transient
            + self.input
            + self.workspace
        )

    @property
    def total(self) -> int:
        return self.allocator_visible + self.fragmentation + self.cuda_context + self.dali


@dataclass(frozen=True)
class MemoryPlanner:
    """Everything batch-independent, measured once; ``estimate(b)`` is then arithmetic."""

    image_size: int
    amp: str  # bf16 | fp16 | off
    weights: int
    gradients: int
    optimizer: int
    ema: int
    activations: ActivationModel
    stored_size: int  # side of the images as stored in the shards (DALI decodes these)
    optimizer_name: str = "adamw"
    cuda_context_mib: float = CUDA_CONTEXT_MIB
    workspace_mib: float = WORKSPACE_MIB
    dali_fixed_mib: float = DALI_FIXED_MIB
    dali_prefetch_depth: int = PREFETCH_DEPTH  # the DALI loader's

    def estimate(self, batch_size: int) -> Estimate:
        act = self.activations.bytes(batch_size)
        transient = 2 * self.activations.largest(batch_size)
        image = 3 * self.image_size**2
        dali = (self.dali_prefetch_depth + 1) * batch_size * (
            3 * self.stored_size**2 + image * 4
        ) + self.dali_fixed_mib * MiB
        return Estimate(
            batch_size=batch_size,
            weights=self.weights,
            gradients=self.gradients,
            optimizer=self.optimizer,
            ema=self.ema,
            activations=act,
            transient=transient,
            input=batch_size * image * 4,
            workspace=int(self.workspace_mib * MiB),
            fragmentation=int(FRAGMENTATION * (act + transient)),
            cuda_context=int(self.cuda_context_mib * MiB),
            dali=int(dali),
        )


def build_planner(
    *,
    num_classes: int,
    image_size: int,
    amp: str = "bf16",
    optimizer: str = "adamw",
    ema: bool = False,
    frozen_groups: int = 0,
    stored_size: int | None = None,
    model: nn.Module | None = None,
    **allowances: Any,
) -> MemoryPlanner:
    """Measure the real model once (on the CPU) and return a planner for any batch size."""
    model = model or build_model(num_classes)
    if frozen_groups:
        model.set_frozen_groups(frozen_groups)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.bfloat16, "off": None}[amp]  # fp16 saves as many bytes as bf16
    fp32 = 4
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    states = {"adamw": 2, "sgd": 1}[optimizer]
    return MemoryPlanner(
        image_size=image_size,
        amp=amp,
        weights=n_params * fp32,
        gradients=n_trainable * fp32,
        optimizer=states * n_trainable * fp32,
        ema=(n_params + n_buffers) * fp32 if ema else 0,
        activations=fit_activations(model, image_size=image_size, dtype=dtype),
        stored_size=stored_size or int(round(image_size * 256 / 224)),
        optimizer_name=optimizer,
        **allowances,
    )


@dataclass(frozen=True)
class Recommendation:
    batch_size: int | None
    accumulate: int | None
    effective_batch: int | None
    budget: int
    table: list[Estimate]


def recommend(
    planner: MemoryPlanner,
    *,
    gpu_memory: int,
    headroom: float = 0.10,
    effective_batch: int = 64,
    candidates=CANDIDATE_BATCHES,
) -> Recommendation:
    """The largest candidate batch whose estimate fits ``gpu_memory * (1 - headroom)`` and the
    gradient accumulation that reaches ``effective_batch``: a batch that divides it exactly is
    preferred (160 fits, 256 wanted: 128 x 2, not 160 x 2 = 320), else the accumulation rounds up."""
    budget = int(gpu_memory * (1.0 - headroom))
    table = [planner.estimate(b) for b in candidates]
    fitting = [e.batch_size for e in table if e.total <= budget and e.batch_size <= max(effective_batch, candidates[0])]
    if not fitting:
        return Recommendation(None, None, None, budget, table)
    exact = [b for b in fitting if effective_batch % b == 0]
    batch = max(exact) if exact else max(fitting)
    accumulate = max(1, math.ceil(effective_batch / batch))
    return Recommendation(batch, accumulate, batch * accumulate, budget, table)


def format_plan(planner: MemoryPlanner, rec: Recommendation, *, gpu_memory: int) -> str:
    first = rec.table[0]
    lines = [
        f"memory plan: efficientnet_b0 at {planner.image_size} px, amp {planner.amp}, GPU {gpu_memory / GiB:.1f} GiB, "
        f"budget {rec.budget / GiB:.2f} GiB after headroom",
        f"static: weights {first.weights / MiB:.0f} MiB, gradients {first.gradients / MiB:.0f} MiB, "
        f"optimizer {first.optimizer / MiB:.0f} MiB, EMA {first.ema / MiB:.0f} MiB",
        f"activations saved for backward: {planner.activations.intercept / MiB:.1f} MiB + "
        f"{planner.activations.per_sample / MiB:.2f} MiB per image (measured on the CPU with saved-tensor hooks)",
        f"allowances: CUDA context {planner.cuda_context_mib:.0f} MiB, workspaces {planner.workspace_mib:.0f} MiB, "
        f"fragmentation {FRAGMENTATION:.0%} of activations, DALI {planner.dali_fixed_mib:.0f} MiB + "
        f"{planner.dali_prefetch_depth + 1} batches at {planner.stored_size} px",
        "",
        f"{'batch':>6} {'activations':>12} {'allocated':>10} {'total':>10}  fits",
    ]
    for e in rec.table:
        lines.append(
            f"{e.batch_size:>6} {e.activations / MiB:>9.0f} MiB {e.allocator_visible / GiB:>6.2f} GiB "
            f"{e.total / GiB:>6.2f} GiB  {'yes' if e.total <= rec.budget else 'no'}"
        )
    lines.append("")
    if rec.batch_size is None:
        lines.append(
            "recommendation: no candidate batch size fits; lower --image-size, plan with --amp, or use a larger GPU"
        )
    else:
        lines.append(
            f"recommendation: batch_size {rec.batch_size}, accumulate {rec.accumulate} "
            f"(effective batch {rec.effective_batch})"
        )
    return "\n".join(lines)


def plan_as_dict(planner: MemoryPlanner, rec: Recommendation) -> dict[str, Any]:
    return {
        "image_size": planner.image_size,
        "amp": planner.amp,
        "activations": asdict(planner.activations),
        "budget": rec.budget,
        "batch_size": rec.batch_size,
        "accumulate": rec.accumulate,
        "effective_batch": rec.effective_batch,
        "table": [{**asdict(e), "allocator_visible": e.allocator_visible, "total": e.total} for e in rec.table],
    }


def measure_on_cuda(planner: MemoryPlanner, *, batch_size: int, num_classes: int, steps: int = 3) -> dict[str, Any]:
    """Run ``steps`` real training steps on the CUDA device and compare the peak with the estimate."""
    if not torch.cuda.is_available():
        raise RuntimeError("train plan --measure: no CUDA device is visible to PyTorch")
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model = place_model(build_model(num_classes), device)
    opt = build_optimizer(model, OptimConfig(name=planner.optimizer_name))
    ema = None
    if planner.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=0.999)
    loss_fn = ClassWeightedCE(torch.ones(num_classes), label_smoothing=0.1).to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[planner.amp]
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        images = torch.randn(batch_size, 3, planner.image_size, planner.image_size, device=device)
        images = images.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, num_classes, (batch_size,), device=device)
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(images)
        loss, _ = loss_fn(logits, labels)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    free, total = torch.cuda.mem_get_info()
    outside = (total - free) - torch.cuda.memory_reserved()
    estimate = planner.estimate(batch_size)
    del model, opt, ema
    torch.cuda.empty_cache()
    return {
        "batch_size": batch_size,
        "measured_max_allocated": peak,
        "estimated_allocator_visible": estimate.allocator_visible,
        "ratio": estimate.allocator_visible / peak,
        "measured_outside_allocator": outside,
        "assumed_cuda_context": estimate.cuda_context,
        "device": torch.cuda.get_device_name(device),
    }


@dataclass(frozen=True)
class PlanOptions:
    """What ``train plan`` is asked, beyond the run config: the card, and what to override or skip."""

    gpu_memory: str = "12GiB"
    image_size: int | None = None  # default: data.image_size
    effective_batch: int | None = None  # default: data.batch_size x optim.accumulate
    amp: str | None = None  # default: compute.amp (auto: bf16)
    stored_size: int | None = None  # default: the shards' image size
    headroom: float = 0.10
    allowances: dict[str, float] = field(default_factory=dict)  # cuda_context_mib, workspace_mib, dali_fixed_mib
    measure: bool = False
    skip_memory: bool = False
    steps_per_epoch: int | None = None  # default: from dataset.json's counts
    lr_curve: Path | None = None


def plan(cfg: TrainConfig, options: PlanOptions, *, say: Callable[..., None] = print) -> dict[str, Any]:
    """The memory plan (unless ``skip_memory``) and the learning-rate curve of ``cfg``, said as it goes;
    returns both as one document (``memory``, ``measured``, ``lr``)."""
    from pawpipe.train.data.dataset import read_dataset_info

    info = None
    if cfg.data.shards is not None:
        try:
            info = read_dataset_info(cfg.data.shards)
        except (FileNotFoundError, ValueError) as exc:
            log.warning("no dataset info (%s); using defaults", exc)
    num_classes = info.num_classes if info else 10
    output: dict[str, Any] = {}
    if not options.skip_memory:
        planner = build_planner(
            num_classes=num_classes,
            image_size=options.image_size or cfg.data.image_size,
            amp=options.amp or {"auto": "bf16"}.get(cfg.compute.amp, cfg.compute.amp),
            optimizer=cfg.optim.name,
            ema=cfg.optim.ema_decay > 0,
            stored_size=options.stored_size or (info.image_size if info else None),
            **options.allowances,
        )
        gpu = parse_size(options.gpu_memory)
        effective = options.effective_batch or cfg.data.batch_size * cfg.optim.accumulate
        rec = recommend(planner, gpu_memory=gpu, headroom=options.headroom, effective_batch=effective)
        say(format_plan(planner, rec, gpu_memory=gpu))
        output["memory"] = plan_as_dict(planner, rec)
        if options.measure:
            checked = measure_on_cuda(planner, batch_size=rec.batch_size or 8, num_classes=num_classes)
            say(
                f"measured on {checked['device']}: max_memory_allocated "
                f"{checked['measured_max_allocated'] / 2**30:.2f} GiB vs estimated "
                f"{checked['estimated_allocator_visible'] / 2**30:.2f} GiB (x{checked['ratio']:.2f}); outside the "
                f"allocator {checked['measured_outside_allocator'] / 2**20:.0f} MiB vs assumed "
                f"{checked['assumed_cuda_context'] / 2**20:.0f} MiB"
            )
            output["measured"] = checked
    steps = options.steps_per_epoch
    if steps is None and info is not None and info.split_counts(cfg.data.train_split):
        from pawpipe.train.fit.schedule import optimizer_steps_per_epoch

        samples = sum(info.split_counts(cfg.data.train_split))
        steps = optimizer_steps_per_epoch(samples // cfg.data.batch_size, cfg.optim.accumulate)
    if steps:
        output["lr"] = lr_plan(cfg, steps, options.lr_curve, say=say)
    elif options.lr_curve:
        raise ConfigError("--lr-curve: expected --steps-per-epoch, or data.shards with dataset.json counts")
    return output


def lr_plan(cfg: TrainConfig, steps_per_epoch: int, out: Path | None, *, say: Callable[..., None] = print) -> dict:
    """The schedule's learning rate at its turning points (said), the whole curve written to ``out``
    (.csv, or a chart) when given; returns the steps and the curve."""
    from pawpipe.common.atomic import write_text
    from pawpipe.train.fit.curves import write_lr_curve
    from pawpipe.train.fit.schedule import WarmupCosine

    total = cfg.schedule.epochs * steps_per_epoch
    schedule = WarmupCosine(
        cfg.optim.lr, cfg.schedule.min_lr, min(cfg.schedule.warmup_for(steps_per_epoch), total), total
    )
    w = schedule.warmup_steps
    say(f"\nlearning rate: {steps_per_epoch} steps/epoch x {cfg.schedule.epochs} epochs = {total} steps, warm-up {w}")
    marks = sorted(
        {0, max(w - 1, 0), w, (w + total) // 2, total - 1}
        | {e * steps_per_epoch for e in range(1, cfg.schedule.epochs)}
    )
    for s in marks[:40]:
        say(f"  step {s:>9d}  epoch {s / steps_per_epoch:>7.2f}  lr {schedule.lr_at(s):.3e}")
    curve = schedule.curve()
    if out is not None:
        if out.suffix == ".csv":
            write_text(out, "step,lr\n" + "".join(f"{s},{lr!r}\n" for s, lr in curve))
        else:
            write_lr_curve(out, curve)
        say(f"wrote {out}")
    return {"steps_per_epoch": steps_per_epoch, "total_steps": total, "warmup_steps": w, "curve": curve}
