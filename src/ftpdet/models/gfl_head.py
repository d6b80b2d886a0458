"""GFL head (Li et al., NeurIPS 2020): two towers shared across FPN levels.

Per location it predicts C class logits (sigmoid, trained as a joint class-IoU score) and 4 edge
distributions of reg_max + 1 bins (left, top, right, bottom distances in stride units).

The head exposes its tower features after every layer (`cls_tower[level][k]`, k = 0 is the FPN
input, k = num_convs the last tower output), and `forward_from` runs the rest of the head from layer
k. Distillation needs both: CrossKD and PD at position k feed student features at layer k through the
teacher's remaining layers.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def conv_gn_relu(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv + GroupNorm + ReLU. Kept as a Sequential so [:2] is the pre-activation (CrossKD taps it)."""
    groups = math.gcd(32, cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


class GFLHead(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int,
        num_convs: int,
        reg_max: int,
        num_levels: int,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        self.num_classes, self.reg_max, self.num_convs = num_classes, reg_max, num_convs
        chans = [in_channels] + [feat_channels] * num_convs
        self.cls_convs = nn.ModuleList(conv_gn_relu(chans[i], chans[i + 1]) for i in range(num_convs))
        self.reg_convs = nn.ModuleList(conv_gn_relu(chans[i], chans[i + 1]) for i in range(num_convs))
        self.cls_out = nn.Conv2d(chans[-1], num_classes, 3, padding=1)
        self.reg_out = nn.Conv2d(chans[-1], 4 * (reg_max + 1), 3, padding=1)
        # GFL's learnable per-level scale on the edge logits: levels share the towers but not the range.
        self.scales = nn.Parameter(torch.ones(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Start every class score at prior_prob so the thousands of background locations do not
        # swamp the first steps (focal-loss initialisation, Lin et al. 2017).
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward_from(
        self, level: int, start: int, cls_feat: torch.Tensor, reg_feat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run tower layers start..num_convs-1 and the predictors on features after layer `start`.

        Returns cls_logits (B, C, H, W) and edge_logits (B, 4 * (reg_max + 1), H, W).
        """
        for k in range(start, self.num_convs):
            cls_feat = self.cls_convs[k](cls_feat)
            reg_feat = self.reg_convs[k](reg_feat)
        return self.cls_out(cls_feat), self.reg_out(reg_feat) * self.scales[level]

    def forward(self, feats: list[torch.Tensor]) -> dict[str, list]:
        """feats: per level (B, in_channels, H, W). Returns per-level lists:
        cls_logits (B, C, H, W), edge_logits (B, 4 * (reg_max + 1), H, W),
        cls_tower / reg_tower: num_convs + 1 feature maps (input, then after each layer).
        """
        out: dict[str, list] = {"cls_logits": [], "edge_logits": [], "cls_tower": [], "reg_tower": []}
        for level, x in enumerate(feats):
            c, r = x, x
            cls_tower, reg_tower = [x], [x]
            for cconv, rconv in zip(self.cls_convs, self.reg_convs):
                c, r = cconv(c), rconv(r)
                cls_tower.append(c)
                reg_tower.append(r)
            out["cls_logits"].append(self.cls_out(c))
            out["edge_logits"].append(self.reg_out(r) * self.scales[level])
            out["cls_tower"].append(cls_tower)
            out["reg_tower"].append(reg_tower)
        return out
