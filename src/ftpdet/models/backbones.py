"""torchvision backbones returning C3..C5 (strides 8, 16, 32).

Random init by default: nothing downloads. `weights` is either a local file holding a torchvision
state_dict (loaded with weights_only=True) or "torchvision:<NAME>" for torchvision's published
weights (e.g. torchvision:IMAGENET1K_V1), which needs internet the first time.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from ftpdet.errors import CheckpointError, ConfigError
from ftpdet.files import safe_load

_HEAD_KEYS = ("fc.", "classifier.")  # ImageNet classifier layers: present in weight files, unused here
LEVELS = ("c3", "c4", "c5")  # strides 8, 16, 32


def stage_width(stage: nn.Module) -> int:
    """Channels a stage outputs: its last BatchNorm's (every torchvision ResNet and MobileNetV3 stage ends in one)."""
    return [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features


def mobilenet_taps(features: nn.Sequential) -> list[int]:
    """Index of the last block at stride 8, 16 and 32. A MobileNetV3 block downsamples only through the stride of
    its (depthwise) conv and has no shortcut when it does, so its stride is the product of its convs' strides."""
    stride, last = 1, {}
    for i, block in enumerate(features):
        stride *= math.prod(m.stride[0] for m in block.modules() if isinstance(m, nn.Conv2d))
        last[stride] = i
    return [last[s] for s in (8, 16, 32)]


class ResNetFeatures(nn.Module):
    """ResNet layer2..layer4 (C3..C5) through torchvision's feature extraction."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        stages = ("layer2", "layer3", "layer4")
        self.body = create_feature_extractor(model, dict(zip(stages, LEVELS)))
        self.out_channels = [stage_width(getattr(model, name)) for name in stages]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x).values())


class MobileNetFeatures(nn.Module):
    """MobileNetV3 `features` cut at the last block of each stride 8 / 16 / 32 (later blocks are dropped)."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        taps = mobilenet_taps(features)
        self.features = create_feature_extractor(features, {str(i): level for i, level in zip(taps, LEVELS)})
        self.out_channels = [stage_width(features[i]) for i in taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.features(x).values())


def _load_weights(model: nn.Module, weights: str, name: str) -> dict[str, torch.Tensor] | None:
    """Load a torchvision state_dict into `model`; or, when the file is an ftpdet checkpoint, return its detector's
    backbone tensors (the weight average when it kept one), for the feature module built from `model`."""
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"{weights}: backbone weights file not found (or use torchvision:<WEIGHTS_NAME>)")
    state = safe_load(path, "backbone weights file")
    if isinstance(state, dict) and "config" in state and isinstance(state.get("model"), dict):
        # A detector trained by ftpdet (e.g. on a pretraining task): its backbone starts this one.
        stored = state["config"].get("model", {}) if isinstance(state["config"], dict) else {}
        if stored.get("backbone") != name:
            raise CheckpointError(f"{path}: its backbone is {stored.get('backbone')!r}, not {name!r}")
        weights_of = state["ema"] if isinstance(state.get("ema"), dict) else state["model"]
        return {k.removeprefix("backbone."): v for k, v in weights_of.items() if k.startswith("backbone.")}
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, got {type(state).__name__}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_HEAD_KEYS)]
    if missing:
        raise CheckpointError(f"{path}: not {name} weights: {len(missing)} backbone tensors missing, e.g. '{missing[0]}'")
    return None


def build_backbone(name: str, width_mult: float = 1.0, weights: str | None = None) -> nn.Module:
    """A module mapping images (B, 3, H, W) to [C3, C4, C5]; `.out_channels` lists their widths. `weights`: None
    (random), "torchvision:<WEIGHTS>", a torchvision state_dict file, or an ftpdet checkpoint whose backbone is
    taken (the way a detector starts from weights pretrained on another task)."""
    kwargs = {"width_mult": width_mult} if name.startswith("mobilenet") else {}
    tv_weights = None
    if weights is not None and weights.startswith("torchvision:"):
        if width_mult != 1.0:
            raise ConfigError(f"model.backbone_weights: torchvision weights exist only for width_mult 1.0, not {width_mult}")
        tv_weights = torchvision.models.get_model_weights(name)[weights.split(":", 1)[1]]
    model = torchvision.models.get_model(name, weights=tv_weights, **kwargs)
    detector_backbone = _load_weights(model, weights, name) if weights is not None and tv_weights is None else None
    if name.startswith("resnet"):
        features: nn.Module = ResNetFeatures(model)
    else:
        # torchvision's MobileNetV3 uses BatchNorm momentum 0.01, tuned for long ImageNet runs. Over a few
        # hundred from-scratch steps the running statistics then lag the weights so far that eval-mode
        # outputs collapse (measured: AP 0.60 with batch statistics, 0.00 with running ones, after 150 steps).
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        features = MobileNetFeatures(model.features)
    if detector_backbone is not None:
        try:
            features.load_state_dict(detector_backbone)
        except RuntimeError as e:
            raise CheckpointError(f"{weights}: its backbone does not fit {name} with width_mult {width_mult} "
                                  f"({str(e).splitlines()[0]})") from None
    return features
