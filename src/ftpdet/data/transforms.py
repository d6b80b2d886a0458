"""Augmentation with torchvision.transforms.v2, boxes carried as tv_tensors.BoundingBoxes.

By default every image is letterboxed to a square: scaled so its longer side is `size`, then padded on the right
and bottom. `data.resize: keep_ratio` resizes as mmdetection does for COCO instead: the shorter side to `size`
(in training, a random side in `data.multiscale`), the longer side at most `data.max_size`, then padded on the right
and bottom to a multiple of 32; a batch is padded to its largest image. Padding only on the right and bottom keeps
box coordinates valid after scaling, so mapping a detection back to the original image is a single division by the
scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

if TYPE_CHECKING:
    from ftpdet.sections import DataConfig


def letterbox_scale(height: int, width: int, size: int) -> float:
    return size / max(height, width)


class Letterbox(v2.Transform):
    """Resize keeping the aspect ratio so the longer side is `size`, then pad to `size` x `size`."""

    def __init__(self, size: int, fill: int = 114) -> None:
        super().__init__()
        self.size = size
        self.fill = fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        s = letterbox_scale(h, w, self.size)
        nh, nw = min(self.size, round(h * s)), min(self.size, round(w * s))
        return {"new_size": [nh, nw], "padding": [0, 0, self.size - nw, self.size - nh]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_and_pad(inpt, params, self.fill)


def resize_and_pad(inpt: Any, params: dict[str, Any], fill: int) -> Any:
    """Resize an image or its boxes to params["new_size"], then pad by params["padding"] (right and bottom)."""
    if not isinstance(inpt, (tv_tensors.Image, tv_tensors.BoundingBoxes)):
        return inpt  # labels and other plain values pass through
    out = F.resize(inpt, params["new_size"], antialias=True)
    return F.pad(out, params["padding"], fill=fill if isinstance(inpt, tv_tensors.Image) else 0)


def keep_ratio_scale(height: int, width: int, short: int, long: int) -> float:
    """mmdetection's keep-ratio rescale: the shorter side to `short` unless the longer would exceed `long`."""
    return min(short / min(height, width), long / max(height, width))


class KeepRatioResize(v2.Transform):
    """Resize keeping the aspect ratio (shorter side `short`, or a random integer in [short[0], short[1]]; longer
    side at most `long`), then pad on the right and bottom to a multiple of `divisor`."""

    def __init__(self, short: int | tuple[int, int], long: int, divisor: int = 32, fill: int = 114) -> None:
        super().__init__()
        self.short, self.long, self.divisor, self.fill = short, long, divisor, fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        short = self.short if isinstance(self.short, int) else int(torch.randint(self.short[0], self.short[1] + 1, ()))
        s = keep_ratio_scale(h, w, short, self.long)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        ph, pw = math.ceil(nh / self.divisor) * self.divisor, math.ceil(nw / self.divisor) * self.divisor
        return {"new_size": [nh, nw], "padding": [0, 0, pw - nw, ph - nh]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_and_pad(inpt, params, self.fill)


@dataclass(frozen=True)
class Resize:
    """How an image becomes the network's input (data.resize, data.image_size, data.max_size, data.multiscale)."""

    size: int
    mode: str = "letterbox"  # letterbox | keep_ratio
    max_size: int = 1333  # keep_ratio: the longer side's cap
    multiscale: tuple[int, int] | None = None  # keep_ratio, training: the shorter side drawn from this range

    @classmethod
    def of(cls, data: DataConfig) -> Resize:
        """From the config's data section."""
        return cls(data.image_size, data.resize, data.max_size, tuple(data.multiscale) if data.multiscale else None)

    @property
    def deterministic_in_training(self) -> bool:
        return self.mode == "letterbox" or self.multiscale is None

    def scale(self, height: int, width: int) -> float:
        """Network input / original, at evaluation (what maps a detection back to the original pixels)."""
        if self.mode == "letterbox":
            return letterbox_scale(height, width, self.size)
        return keep_ratio_scale(height, width, self.size, self.max_size)

    def transform(self, train: bool = False) -> v2.Compose:
        """The resize, then boxes that shrank below 1 px dropped. Deterministic unless training with multiscale."""
        if self.mode == "letterbox":
            return letterbox_transform(self.size)
        short = self.multiscale if train and self.multiscale else self.size
        return v2.Compose([KeepRatioResize(short, self.max_size), v2.SanitizeBoundingBoxes(min_size=1.0)])


def letterbox_transform(size: int) -> v2.Compose:
    """Letterbox, then drop boxes that shrank below 1 px. Deterministic, so a cached dataset does it once."""
    return v2.Compose([Letterbox(size), v2.SanitizeBoundingBoxes(min_size=1.0)])


def augmentation(hflip: float = 0.5, photometric: bool = True) -> v2.Compose | None:
    """Training augmentation of letterboxed samples: photometric jitter, then horizontal flip (None: neither).
    It runs after the letterbox, on the network's input size: cheaper than on a large original, and a
    cached dataset keeps letterboxed images so each step only pays for this (the jitter also tints the padding)."""
    ops: list[v2.Transform] = []
    if photometric:
        ops.append(v2.RandomPhotometricDistort(p=0.5))
    if hflip > 0:
        ops.append(v2.RandomHorizontalFlip(p=hflip))
    return v2.Compose(ops) if ops else None


def build_transforms(size: int | Resize, train: bool, hflip: float = 0.5, photometric: bool = True) -> v2.Compose:
    """Eval: the resize (a letterbox for an int size). Train: the resize, then `augmentation` (what CocoDetection
    does in two stages)."""
    resize = size if isinstance(size, Resize) else Resize(size)
    ops: list = [resize.transform(train)]
    augment = augmentation(hflip, photometric) if train else None
    if augment is not None:
        ops.append(augment)
    return v2.Compose(ops)


def augmented(augment: v2.Compose, image: torch.Tensor, boxes: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`augment` applied to one letterboxed sample: (image (3, S, S) uint8, boxes (N, 4), labels (N,)) as plain
    tensors."""
    sample = augment(make_sample(image, boxes, labels))
    return sample["image"].as_subclass(torch.Tensor), sample["boxes"].as_subclass(torch.Tensor), sample["labels"]


def make_sample(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Wrap raw tensors for v2: image (3, H, W) uint8, boxes (N, 4) xyxy pixels, labels (N,)."""
    h, w = image.shape[-2:]
    return {
        "image": tv_tensors.Image(image),
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": labels,
    }
