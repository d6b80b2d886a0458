"""FPN over C3..C5 (torchvision.ops.FeaturePyramidNetwork), plus P6/P7 from P5 when asked for."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, num_levels: int) -> None:
        super().__init__()
        extra = LastLevelP6P7(out_channels, out_channels) if num_levels > 3 else None
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra)
        self.num_levels = num_levels

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[C3, C4, C5] -> [P3, ..., P(2 + num_levels)], each (B, out_channels, H/s, W/s)."""
        out = self.fpn(OrderedDict((f"c{i + 3}", f) for i, f in enumerate(feats)))
        return list(out.values())[: self.num_levels]
