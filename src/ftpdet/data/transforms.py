"""Augmentation with torchvision.transforms.v2, boxes carried as tv_tensors.BoundingBoxes.

Every image is letterboxed to a square: scaled so its longer side is `size`, then padded on the right
and bottom. Padding only there keeps box coordinates valid after scaling, so mapping a detection back
to the original image is a single division by the scale.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


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
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.BoundingBoxes)):
            return inpt  # labels and other plain values pass through
        out = F.resize(inpt, params["new_size"], antialias=True)
        return F.pad(out, params["padding"], fill=self.fill if isinstance(inpt, tv_tensors.Image) else 0)


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


def build_transforms(size: int, train: bool, hflip: float = 0.5, photometric: bool = True) -> v2.Compose:
    """Eval: letterbox. Train: letterbox, then `augmentation` (what CocoDetection does in two stages)."""
    ops: list = [letterbox_transform(size)]
    augment = augmentation(hflip, photometric) if train else None
    if augment is not None:
        ops.append(augment)
    return v2.Compose(ops)


def make_sample(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Wrap raw tensors for v2: image (3, H, W) uint8, boxes (N, 4) xyxy pixels, labels (N,)."""
    h, w = image.shape[-2:]
    return {
        "image": tv_tensors.Image(image),
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": labels,
    }
