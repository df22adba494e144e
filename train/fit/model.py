"""The network: timm EfficientNet-B0 backbone + the users' head (GAP -> BatchNorm1d -> Dropout -> Linear).

The backbone is built with ``num_classes=0, global_pool=''`` so that it ends at its feature map;
pooling lives in our head, and ``forward`` never calls the backbone's own classifier, so neither
timm's ``reset_classifier`` on the backbone nor ours can drop the BatchNorm from the head.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import nn

log = logging.getLogger(__name__)

# Keys of a classifier in the checkpoints we accept: timm ("classifier."), torchvision
# ("classifier.1."), and our own head ("head.").
_CLASSIFIER_PREFIXES = ("classifier.", "head.", "fc.")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")


class Head(nn.Sequential):
    """Global average pooling -> BatchNorm1d -> Dropout -> Linear, as the users' Keras head plus dropout."""

    def __init__(self, in_features: int, num_classes: int, *, drop_rate: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.norm = nn.BatchNorm1d(in_features)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes)


class PawNet(nn.Module):
    """EfficientNet-B0 features + ``Head``; ``group_names()`` lists the freezable backbone groups in order."""

    def __init__(
        self, num_classes: int, *, arch: str = "efficientnet_b0", drop_rate: float = 0.2, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.backbone = timm.create_model(
            arch, pretrained=False, num_classes=0, global_pool="", drop_path_rate=drop_path_rate
        )
        self.num_features = self.backbone.num_features
        self.head = Head(self.num_features, num_classes, drop_rate=drop_rate)
        self.num_classes = num_classes
        self.freeze_bn = False
        self._frozen_groups = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the penultimate features (pooled, after the head's BatchNorm: what the classifier
        sees, before dropout), for neighbour views of the data (``train.audit.neighbours``)."""
        head = self.head
        embedding = head.norm(head.flatten(head.pool(self.backbone.forward_features(x))))
        return head.fc(head.drop(embedding)), embedding

    def get_classifier(self) -> nn.Linear:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace only the final Linear; pooling, BatchNorm and dropout of the head stay."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"reset_classifier: the head pools by average, got global_pool={global_pool!r}")
        fc = self.head.fc
        self.head.fc = nn.Linear(self.num_features, num_classes).to(device=fc.weight.device, dtype=fc.weight.dtype)
        self.num_classes = num_classes

    def groups(self) -> list[tuple[str, list[nn.Module]]]:
        """Backbone groups from input to output: stem, each block stage, the 1x1 conv head."""
        b = self.backbone
        stages = [(f"blocks.{i}", [stage]) for i, stage in enumerate(b.blocks)]
        return [("stem", [b.conv_stem, b.bn1]), *stages, ("conv_head", [b.conv_head, b.bn2])]

    def set_frozen_groups(self, count: int) -> None:
        """Freeze the first ``count`` backbone groups (no gradients, BatchNorm in eval mode); 0 unfreezes all."""
        groups = self.groups()
        if count > len(groups):
            raise ValueError(f"freeze_groups: the backbone has {len(groups)} groups, got {count}")
        self._frozen_groups = count
        for i, (_, modules) in enumerate(groups):
            for module in modules:
                module.requires_grad_(i >= count)
        self.train(self.training)

    def train(self, mode: bool = True) -> PawNet:
        super().train(mode)
        if mode:
            frozen = [m for _, mods in self.groups()[: self._frozen_groups] for m in mods]
            for scope in [self.backbone] if self.freeze_bn else frozen:
                for module in scope.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
        return self


def place_model(model: nn.Module, device: torch.device | str, *, channels_last: bool = True) -> nn.Module:
    """``model`` on ``device`` (channels-last when asked), in place; build the optimizer after this, so
    that it sees the parameters where they train (AdamW picks its fused CUDA kernel from that)."""
    return model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def build_model(
    num_classes: int,
    *,
    arch: str = "efficientnet_b0",
    drop_rate: float = 0.2,
    drop_path_rate: float = 0.0,
    pretrained: str | Path | None = None,
    freeze_bn: bool = False,
) -> PawNet:
    """Build the network; load backbone weights from a local file when given (logged), else keep timm's
    random initialisation (the caller says so: a checkpoint's weights may be loaded next)."""
    model = PawNet(num_classes, arch=arch, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    if pretrained:
        report = load_pretrained(model, pretrained)
        log.info(
            "pretrained backbone from %s (%s layout): %d tensors loaded, classifier skipped (%d keys)",
            pretrained,
            report["layout"],
            report["loaded"],
            len(report["skipped"]),
        )
    model.freeze_bn = freeze_bn
    model.train()
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (bare, or under model/state_dict/...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights: {path}: no such file (weights are never downloaded)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError) as exc:
        raise ValueError(f"pretrained weights: {path}: not a torch state dict: {exc}") from None
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"pretrained weights: {path}: expected a mapping of names to tensors")
    return dict(obj)


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def load_pretrained(model: PawNet, path: str | Path) -> dict:
    """Copy backbone weights from ``path`` into ``model.backbone``; the source classifier is skipped.

    Accepts timm key names (``conv_stem.weight``, ``blocks.0.0...``, as in timm's released
    ``efficientnet_b0`` files and our own checkpoints) and torchvision's EfficientNet-B0 layout
    (``features.0.0.weight``...), which holds the same tensors in the same order, so it is mapped by
    position after every shape has been checked.
    """
    source = read_state_dict(path)
    skipped = sorted(k for k in source if _strip(k).startswith(_CLASSIFIER_PREFIXES))
    tensors = {_strip(k): v for k, v in source.items() if k not in skipped}
    target = model.backbone.state_dict()
    if any(k.startswith("features.") for k in tensors):
        layout = "torchvision"
        names = [k for k in tensors if k.startswith("features.")]
        if len(names) != len(target) or any(tensors[a].shape != target[b].shape for a, b in zip(names, target)):
            raise ValueError(
                f"pretrained weights: {path}: torchvision layout with {len(names)} backbone tensors does not "
                f"match {model.backbone.__class__.__name__} ({len(target)} tensors) tensor for tensor"
            )
        mapped = {b: tensors[a] for a, b in zip(names, target)}
    else:
        layout = "timm"
        mapped = {k: v for k, v in tensors.items() if k in target}
        unexpected = sorted(set(tensors) - set(mapped))
        if unexpected:
            log.warning(
                "pretrained weights: %s: %d tensors not in the backbone ignored (e.g. %s)",
                path,
                len(unexpected),
                unexpected[:3],
            )
    missing = sorted(set(target) - set(mapped))
    wrong = sorted(k for k in mapped if mapped[k].shape != target[k].shape)
    if missing or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {len(missing)} (e.g. {missing[:3]})" if missing else "",
                f"shape mismatch {wrong[:3]}" if wrong else "",
            )
            if part
        )
        raise ValueError(f"pretrained weights: {path}: expected every {layout} backbone tensor: {detail}")
    model.backbone.load_state_dict(mapped, strict=True)
    return {"layout": layout, "loaded": len(mapped), "skipped": skipped}
