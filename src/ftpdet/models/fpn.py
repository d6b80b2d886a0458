"""FPN over C3..C5 (torchvision.ops.FeaturePyramidNetwork), plus P6/P7 from P5 when asked for.

P7 = conv(relu(P6)) as torchvision's RetinaNet computes it, or conv(P6) as mmdetection's GFL configs do
(`relu_before_extra_convs=False`): `relu_before_p7` chooses, so an imported mmdetection model gives its outputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7


class LastLevelP6P7NoReLU(LastLevelP6P7):
    """P6 = conv(P5), P7 = conv(P6): mmdetection's FPN with add_extra_convs='on_output' and no ReLU between."""

    def forward(self, p: list[torch.Tensor], c: list[torch.Tensor], names: list[str]):
        p6 = self.p6(p[-1] if self.use_P5 else c[-1])
        p.extend([p6, self.p7(p6)])
        names.extend(["p6", "p7"])
        return p, names


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, num_levels: int, relu_before_p7: bool = True) -> None:
        super().__init__()
        extra_block = LastLevelP6P7 if relu_before_p7 else LastLevelP6P7NoReLU
        extra = extra_block(out_channels, out_channels) if num_levels > 3 else None
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra)
        self.num_levels = num_levels

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[C3, C4, C5] -> [P3, ..., P(2 + num_levels)], each (B, out_channels, H/s, W/s)."""
        out = self.fpn(OrderedDict((f"c{i + 3}", f) for i, f in enumerate(feats)))
        return list(out.values())[: self.num_levels]
