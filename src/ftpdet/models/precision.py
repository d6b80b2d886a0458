"""How one model runs on its device: bf16 autocast or float32, channels_last or the default memory format.

Chosen per model by measurement, not globally: on the 2-core development CPU the depthwise-heavy MobileNetV3
student trains faster in float32 with channels_last (57 vs 77 ms forward + backward per 16-image batch under
bf16 autocast), while its MobileNetV3-large teacher's no-grad forward is faster under bf16 autocast in the
default format (47 vs 78 ms in float32) and the ResNet-18's under bf16 with channels_last (78 vs 83 ms);
docs/speed.md has the table and the command. A model's config holds its choice (`train.amp`,
`train.channels_last`); a teacher runs as its own checkpoint's config says.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ftpdet.sections import TrainConfig


@dataclass(frozen=True)
class Precision:
    amp: str = "none"  # "none" (float32), "bf16" or "fp16" (autocast; fp16 trains with a GradScaler)
    channels_last: bool = False

    @classmethod
    def of(cls, tc: TrainConfig) -> Precision:
        return cls(tc.amp, tc.channels_last)

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(device_type, dtype=dtype, enabled=self.amp in ("bf16", "fp16"))

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in this memory format (in place, as nn.Module.to)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def input(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in this memory format."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
