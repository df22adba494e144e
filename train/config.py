"""``TrainConfig``: every training choice in one pydantic model, read from TOML with CLI overrides.

Unknown keys are errors (a typo must not silently fall back to a default). Example::

    seed = 0
    [data]
    shards = "demo/shards"
    batch_size = 64
    [optim]
    lr = 3e-4

The defaults follow the users' setup (MISSION.md): EfficientNet-B0 at 224 px, batch 64, class
weights, early stopping on validation loss with patience 5, best checkpoint by validation accuracy;
plus what they asked for next: warm-up then cosine decay, label smoothing 0.1.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pawpipe.common.config import COMMAND_LINE, ConfigError, apply_overrides, read_config_file, validate
from pawpipe.common.contracts.labels_file import WEIGHT_SCHEMES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    shards: Path | None = None  # folder holding dataset.json and one sub-folder per split
    train_split: str = "train"
    val_split: str = "val"
    image_size: int = Field(224, ge=16)
    batch_size: int = Field(64, ge=1)  # per optimizer micro-step, per rank
    eval_batch_size: int = Field(0, ge=0)  # 0: same as batch_size
    loader: str = "auto"  # "auto", "dali", "torch": the LoaderSpec.backend of train.data.loader.open_loader
    workers: int = Field(4, ge=0)
    # The train transform (train.data.transforms); resolved for the loaders by train.data.loader.resolve_data_config.
    scale: tuple[float, float] = (0.25, 1.0)  # area fraction of the random resized crop (box crops: keep a quarter)
    jitter: float = Field(0.0, ge=0.0, lt=1.0)  # colour jitter: brightness, contrast, saturation each in [1-j, 1+j]


class ModelConfig(_Section):
    arch: Literal["efficientnet_b0"] = "efficientnet_b0"
    pretrained: Path | None = None  # local state dict (.pt/.pth/.bin) or .safetensors; never downloaded
    drop_rate: float = Field(0.2, ge=0.0, lt=1.0)  # dropout in the head, before the Linear
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0)  # stochastic depth in the backbone blocks
    freeze_bn: bool = False  # keep backbone BatchNorm running statistics fixed (affine params still train)
    freeze_groups: int = Field(0, ge=0)  # leading backbone groups frozen (stem, blocks.0..6, conv_head) ...
    freeze_steps: int = Field(0, ge=0)  # ... for this many optimizer steps, then the whole network trains


class LossConfig(_Section):
    class_weights: Literal[WEIGHT_SCHEMES] = "balanced"  # common.contracts.labels_file.WEIGHT_SCHEMES
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)


class OptimConfig(_Section):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3e-4, gt=0.0)  # peak learning rate, reached at the end of warm-up
    weight_decay: float = Field(0.05, ge=0.0)  # not applied to norms and biases
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # SGD (Nesterov)
    accumulate: int = Field(1, ge=1)  # micro-batches per optimizer step
    clip_grad_norm: float = Field(1.0, ge=0.0)  # 0: no clipping
    ema_decay: float = Field(0.0, ge=0.0, lt=1.0)  # 0: no EMA; else validate and keep best on EMA weights


class ScheduleConfig(_Section):
    epochs: int = Field(30, ge=1)
    warmup_steps: int | None = Field(None, ge=0)  # optimizer steps; overrides warmup_epochs when set
    warmup_epochs: float = Field(0.1, ge=0.0)  # fraction (or multiple) of an epoch
    min_lr: float = Field(1e-6, ge=0.0)

    def warmup_for(self, steps_per_epoch: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(round(self.warmup_epochs * steps_per_epoch))


class ComputeConfig(_Section):
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:N
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 where supported, else fp16; off on CPU
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False  # torch.use_deterministic_algorithms; slower, for debugging
    cpu_threads: int = Field(0, ge=0)  # torch intra-op threads when training on the CPU; 0: torch's default
    # SyncBatchNorm across ranks. auto: on under torchrun when the per-rank batch is below 32 on
    # CUDA (PyTorch's SyncBatchNorm runs on GPUs only; on the CPU, auto is off and true is refused).
    sync_bn: bool | Literal["auto"] = "auto"


class EvalConfig(_Section):
    every_steps: int = Field(0, ge=0)  # 0: only at the end of each epoch
    patience: int = Field(5, ge=0)  # epochs without a better monitored loss before stopping; 0: never stop
    monitor: Literal["loss", "nll"] = "loss"  # loss: the training objective; nll: plain cross-entropy
    best_metric: Literal["accuracy", "macro_f1"] = "accuracy"


class RecordConfig(_Section):
    log_every_steps: int = Field(50, ge=1)
    dynamics: bool = True  # per-sample loss and margin per epoch, for label-noise detection
    dynamics_rows_per_group: int = Field(65_536, ge=1)  # bounded memory: rows buffered before a flush
    max_nonfinite_in_a_row: int = Field(20, ge=1)
    progress: bool = True  # a progress bar on a terminal; off a terminal, a plain line every progress_every_s
    progress_every_s: float = Field(60.0, gt=0.0)
    status_every_s: float = Field(5.0, ge=0.0)  # RUN_DIR/status.json rewrite cadence; 0: after every step


class CheckpointConfig(_Section):
    """When ``checkpoints/last.pt`` is written besides the end of every epoch, a signal and SIGUSR1."""

    every_minutes: float = Field(20.0, ge=0.0)  # mid-epoch, at the next step boundary; 0: off
    every_steps: int = Field(0, ge=0)  # also every N optimizer steps; 0: off (for very slow steps, and tests)


class AuditConfig(_Section):
    """Label audit (train/audit/): threshold samples for the AUM cut-off (Pleiss et al. 2020)."""

    threshold_samples: bool = False  # move a deterministic 1/(K+1) of the training samples to one extra class
    threshold_subset: int = Field(0, ge=0)  # which 1/(K+1): two runs with subsets 0 and 1 score every sample
    threshold_seed: int = 0  # the hash seed of the partition (the same in both runs, unlike `seed`)


class TrainConfig(_Section):
    seed: int = 0
    out_dir: Path = Path("runs")  # without `train run --out RUN_DIR`, the run directory is out_dir/run_name
    run_name: str = ""  # empty: a timestamp (a new run every time)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    compute: ComputeConfig = ComputeConfig()
    eval: EvalConfig = EvalConfig()
    record: RecordConfig = RecordConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    audit: AuditConfig = AuditConfig()

    @model_validator(mode="after")
    def _freeze_needs_steps(self) -> TrainConfig:
        if self.model.freeze_groups and not self.model.freeze_steps:
            raise ValueError("model.freeze_groups needs model.freeze_steps > 0 (a frozen backbone never learns)")
        return self


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> (["optim", "lr"], 0.001); the value is read as TOML, else kept as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def load_train_config(
    path: str | Path | None = None, *, overrides: list[str] = (), values: dict[str, Any] | None = None
) -> TrainConfig:
    """Read a TOML (or a run's resolved JSON) config, apply ``--set`` overrides then ``values``.

    ``values`` maps dotted keys to already-typed values (the CLI's dedicated flags); ``None`` values
    are ignored so that an absent flag leaves the file's value in place. An invalid field's error line
    names PATH, or ``(command line)`` when a ``--set`` or a flag gave its value (see ``validate``).
    """
    doc = read_config_file(path) if path is not None else {}
    overridden: list[str] = []
    for item in overrides:  # one at a time: a bad item is reported after the ones before it apply
        keys, value = parse_override(item)
        overridden += apply_overrides(doc, {".".join(keys): value})
    overridden += apply_overrides(doc, values or {})
    return validate(
        TrainConfig, doc, source=str(Path(path)) if path is not None else COMMAND_LINE, overridden=overridden
    )
