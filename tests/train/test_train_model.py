from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from pawpipe.train.fit.model import PawNet, build_model, load_pretrained


def test_head_is_gap_bn_dropout_linear():
    model = build_model(5, drop_rate=0.3)
    head = list(model.head.children())
    assert [type(m) for m in head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.BatchNorm1d, nn.Dropout, nn.Linear]
    assert model.head.norm.num_features == 1280 and model.head.drop.p == 0.3
    assert (model.head.fc.in_features, model.head.fc.out_features) == (1280, 5)
    assert isinstance(model.backbone.classifier, nn.Identity) and model.backbone.num_classes == 0
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_reset_classifier_keeps_the_head_layout():
    model = build_model(5)
    norm = model.head.norm
    model.reset_classifier(7)
    assert model.head.norm is norm and isinstance(model.head.drop, nn.Dropout)
    assert model.get_classifier().out_features == 7
    # timm's own reset on the backbone cannot put a classifier into our forward path
    model.backbone.reset_classifier(3)
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(ValueError, match="average"):
        model.reset_classifier(7, global_pool="max")


def _timm_source(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("efficientnet_b0", pretrained=False, num_classes=11)


def _assert_backbone_equals(model: PawNet, source_state: dict) -> None:
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, source_state[name]), name


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "checkpoint_dict"])
def test_pretrained_backbone_from_local_file(tmp_path: Path, fmt: str):
    source = _timm_source(seed=123).state_dict()
    path = tmp_path / f"weights.{'safetensors' if fmt == 'safetensors' else 'pt'}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    elif fmt == "pt":
        torch.save(source, path)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}, "epoch": 3}, path)
    torch.manual_seed(0)
    model = build_model(4)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    report = load_pretrained(model, path)
    _assert_backbone_equals(model, source)
    assert report["layout"] == "timm"
    assert [k.removeprefix("module.") for k in report["skipped"]] == ["classifier.bias", "classifier.weight"]
    # the source classifier (11 classes) is skipped; our 4-class head keeps its own init
    for k, v in model.head.state_dict().items():
        assert torch.equal(v, head_before[k]), k


def test_pretrained_torchvision_layout(tmp_path: Path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(7)
    tv = torchvision.models.efficientnet_b0(weights=None, num_classes=9).eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    model = build_model(4, pretrained=tmp_path / "tv.pth").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.backbone.forward_features(x), tv.features(x), atol=1e-5)


def test_pretrained_errors_are_specific(tmp_path: Path):
    model = build_model(4)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_pretrained(model, tmp_path / "missing.pt")
    torch.save({"conv_stem.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing"):
        load_pretrained(model, tmp_path / "partial.pt")


def test_freeze_groups_and_freeze_bn():
    model = build_model(4, freeze_bn=True)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.head.norm.training  # the new head's statistics still adapt
    assert all(p.requires_grad for p in model.parameters())  # statistics frozen, weights still train

    model = build_model(4)
    model.set_frozen_groups(2)  # stem + blocks.0
    assert not model.backbone.conv_stem.weight.requires_grad
    assert not any(p.requires_grad for p in model.backbone.blocks[0].parameters())
    assert all(p.requires_grad for p in model.backbone.blocks[1].parameters())
    assert not model.backbone.bn1.training and model.backbone.blocks[1][0].bn1.training
    model.set_frozen_groups(0)
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.bn1.training
