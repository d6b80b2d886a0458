"""torchvision backbones returning C3..C5 (strides 8, 16, 32).

Random init by default: nothing downloads. `weights` is either a local file holding a torchvision
state_dict (loaded with weights_only=True) or "torchvision:<NAME>" for torchvision's published
weights (e.g. torchvision:IMAGENET1K_V1), which needs internet the first time.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from ftpdet.errors import CheckpointError, ConfigError

_RESNET_CHANNELS = {"resnet18": [128, 256, 512], "resnet34": [128, 256, 512], "resnet50": [512, 1024, 2048]}
_HEAD_KEYS = ("fc.", "classifier.")  # ImageNet classifier layers: present in weight files, unused here


class MobileNetFeatures(nn.Module):
    """MobileNetV3 `features` cut at the last block of each stride 8 / 16 / 32."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        taps, x, stride = [], torch.zeros(1, 3, 64, 64), {}
        with torch.no_grad():
            for i, block in enumerate(features):
                x = block(x)
                stride[i] = 64 // x.shape[-1]
        for s in (8, 16, 32):
            taps.append(max(i for i, v in stride.items() if v == s))
        self.features = features[: taps[-1] + 1]
        self.taps = taps
        with torch.no_grad():
            self.out_channels = [o.shape[1] for o in self._run(torch.zeros(1, 3, 64, 64))]

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.taps:
                outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._run(x)


class ResNetFeatures(nn.Module):
    def __init__(self, model: nn.Module, out_channels: list[int]) -> None:
        super().__init__()
        self.body = IntermediateLayerGetter(model, {"layer2": "c3", "layer3": "c4", "layer4": "c5"})
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x).values())


def _load_weights(model: nn.Module, weights: str, name: str) -> None:
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"{weights}: backbone weights file not found (or use torchvision:<WEIGHTS_NAME>)")
    from ftpdet.engine.checkpoint import safe_load  # local: models do not depend on the engine at import time

    state = safe_load(path, "backbone weights file")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, got {type(state).__name__}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_HEAD_KEYS)]
    if missing:
        raise CheckpointError(f"{path}: not {name} weights: {len(missing)} backbone tensors missing, e.g. '{missing[0]}'")


def build_backbone(name: str, width_mult: float = 1.0, weights: str | None = None) -> nn.Module:
    """A module mapping images (B, 3, H, W) to [C3, C4, C5]; `.out_channels` lists their widths."""
    kwargs = {"width_mult": width_mult} if name.startswith("mobilenet") else {}
    tv_weights = None
    if weights is not None and weights.startswith("torchvision:"):
        if width_mult != 1.0:
            raise ConfigError(f"model.backbone_weights: torchvision weights exist only for width_mult 1.0, not {width_mult}")
        tv_weights = torchvision.models.get_model_weights(name)[weights.split(":", 1)[1]]
    model = torchvision.models.get_model(name, weights=tv_weights, **kwargs)
    if weights is not None and tv_weights is None:
        _load_weights(model, weights, name)
    if name.startswith("resnet"):
        return ResNetFeatures(model, _RESNET_CHANNELS[name])
    # torchvision's MobileNetV3 uses BatchNorm momentum 0.01, tuned for long ImageNet runs. Over a few
    # hundred from-scratch steps the running statistics then lag the weights so far that eval-mode
    # outputs collapse (measured: AP 0.60 with batch statistics, 0.00 with running ones, after 150 steps).
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return MobileNetFeatures(model.features)
