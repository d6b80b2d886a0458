"""Backbones returning C3..C5 (strides 8, 16, 32): torchvision's ResNets and MobileNetV3s, and any timm model
(`timm:<name>`) through timm's `features_only`.

Random init by default: nothing downloads. `weights` is either a local file (a torchvision or timm state_dict,
loaded with weights_only=True or from safetensors; or an ftpdet checkpoint whose backbone is taken),
"torchvision:<NAME>" for torchvision's published weights (e.g. torchvision:IMAGENET1K_V1), or "timm" for timm's
pretrained weights of a timm model; those two need internet the first time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from ftpdet.errors import CheckpointError, ConfigError
from ftpdet.files import safe_load

_HEAD_KEYS = ("fc.", "classifier.")  # ImageNet classifier layers: present in weight files, unused here
LEVELS = ("c3", "c4", "c5")  # strides 8, 16, 32
TIMM_PREFIX = "timm:"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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

    def stages(self, count: int) -> list[nn.Module]:
        """The stem (conv1, bn1) and layer1..layer`count`: what mmdetection's frozen_stages=count freezes."""
        names = ["conv1", "bn1"] + [f"layer{i}" for i in range(1, count + 1)]
        return [self.body.get_submodule(n) for n in names]


class MobileNetFeatures(nn.Module):
    """MobileNetV3 `features` cut at the last block of each stride 8 / 16 / 32 (later blocks are dropped)."""

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        taps = mobilenet_taps(features)
        self.features = create_feature_extractor(features, {str(i): level for i, level in zip(taps, LEVELS)})
        self.out_channels = [stage_width(features[i]) for i in taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.features(x).values())


class TimmFeatures(nn.Module):
    """A timm model built with `features_only`: of its feature maps, the last one at each of strides 8, 16 and 32.
    `mean` / `std` are the input normalisation its pretrained weights expect (ImageNet's for most models)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.body = model
        info = model.feature_info
        last = {r: i for i, r in enumerate(info.reduction())}  # stride -> index of its last feature map
        missing = [s for s in (8, 16, 32) if s not in last]
        if missing:
            raise ConfigError(f"model.backbone: timm:{name} has no feature map at stride {missing} "
                              f"(its strides: {info.reduction()}); the FPN needs 8, 16 and 32")
        self.taps = [last[s] for s in (8, 16, 32)]
        self.out_channels = [info.channels()[i] for i in self.taps]
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(cfg.get("std", IMAGENET_STD))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        return [feats[i] for i in self.taps]


def detector_backbone(state: Any, path: Path, name: str) -> dict[str, torch.Tensor] | None:
    """When `state` is an ftpdet checkpoint (a detector trained by ftpdet, e.g. on a pretraining task), its
    backbone's tensors (the weight average when it kept one), keyed for the feature module; None otherwise.
    Refused when that detector's backbone is not `name`."""
    if not (isinstance(state, dict) and "config" in state and isinstance(state.get("model"), dict)):
        return None
    stored = state["config"].get("model", {}) if isinstance(state["config"], dict) else {}
    if stored.get("backbone") != name:
        raise CheckpointError(f"{path}: its backbone is {stored.get('backbone')!r}, not {name!r}")
    weights_of = state["ema"] if isinstance(state.get("ema"), dict) else state["model"]
    return {k.removeprefix("backbone."): v for k, v in weights_of.items() if k.startswith("backbone.")}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a .safetensors file or a torch file (weights_only=True); an ftpdet checkpoint's
    dictionary is returned as it is, for the caller to recognise."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for truncated or foreign files
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    state = safe_load(path, "backbone weights file")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, got {type(state).__name__}")
    return state


def build_timm_backbone(name: str, width_mult: float, weights: str | None) -> TimmFeatures:
    """`timm:<name>` through timm's features_only. weights: None (random), "timm" (timm's pretrained weights,
    downloaded by timm), a state_dict file of that timm model, or an ftpdet checkpoint with that backbone."""
    import timm

    if width_mult != 1.0:
        raise ConfigError(f"model.width_mult: timm models take their width from the name (e.g. "
                          f"timm:mobilenetv3_small_050), not width_mult {width_mult}")
    if not timm.is_model(name):
        raise ConfigError(f"model.backbone: timm has no model {name!r} (list them with timm.list_models())")
    pretrained = weights == "timm"
    try:
        model = timm.create_model(name, pretrained=pretrained, features_only=True)
    except Exception as e:  # no internet, no pretrained weights for this name, or a model without features_only
        what = "download its pretrained weights" if pretrained else "build it with features_only"
        raise ConfigError(f"model.backbone: timm could not {what} for {name!r} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    features = TimmFeatures(model, name)
    if weights is None or pretrained:
        return features
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"{weights}: backbone weights file not found (or use timm for timm's pretrained weights)")
    state = _read_state_dict(path)
    full_name = TIMM_PREFIX + name
    detector = detector_backbone(state, path, full_name)
    if detector is not None:
        state, target = detector, features
    else:
        for key in ("state_dict", "model"):  # training scripts' wrappers around the weights
            if isinstance(state.get(key), dict):
                state = state[key]
        target: nn.Module = model  # the features_only model keeps the full model's module names; its head is gone
    try:
        result = target.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape: another variant of the model
        raise CheckpointError(f"{path}: does not fit {full_name} ({str(e).splitlines()[-1].strip()})") from None
    if result.missing_keys:
        raise CheckpointError(f"{path}: not {full_name} weights: {len(result.missing_keys)} backbone tensors "
                              f"missing, e.g. '{result.missing_keys[0]}'")
    if target is model:  # tensors beyond the full model's (its classifier is fine): weights of a deeper variant
        known = set(timm.create_model(name).state_dict())
        foreign = [k for k in result.unexpected_keys if k not in known]
        if foreign:
            raise CheckpointError(f"{path}: not {full_name} weights: {len(foreign)} tensors it does not have, "
                                  f"e.g. '{foreign[0]}'")
    return features


def _load_weights(model: nn.Module, weights: str, name: str) -> dict[str, torch.Tensor] | None:
    """Load a torchvision state_dict into `model`; or, when the file is an ftpdet checkpoint, return its detector's
    backbone tensors (the weight average when it kept one), for the feature module built from `model`."""
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"{weights}: backbone weights file not found (or use torchvision:<WEIGHTS_NAME>)")
    state = safe_load(path, "backbone weights file")
    detector = detector_backbone(state, path, name)
    if detector is not None:
        return detector
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
    taken (the way a detector starts from weights pretrained on another task). `timm:<name>`: see
    build_timm_backbone."""
    if name.startswith(TIMM_PREFIX):
        return build_timm_backbone(name.removeprefix(TIMM_PREFIX), width_mult, weights)
    kwargs = {"width_mult": width_mult} if name.startswith("mobilenet") else {}
    tv_weights = None
    if weights is not None and weights.startswith("torchvision:"):
        if width_mult != 1.0:
            raise ConfigError(f"model.backbone_weights: torchvision weights exist only for width_mult 1.0, not {width_mult}")
        tv_weights = torchvision.models.get_model_weights(name)[weights.split(":", 1)[1]]
    model = torchvision.models.get_model(name, weights=tv_weights, **kwargs)
    from_detector = _load_weights(model, weights, name) if weights is not None and tv_weights is None else None
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
    if from_detector is not None:
        try:
            features.load_state_dict(from_detector)
        except RuntimeError as e:
            raise CheckpointError(f"{weights}: its backbone does not fit {name} with width_mult {width_mult} "
                                  f"({str(e).splitlines()[0]})") from None
    return features
