"""`pkd`: PKD (Cao et al., NeurIPS 2022), feature-based: Pearson correlation between FPN features.

Each channel of student and teacher FPN features is z-scored over (batch, height, width); the loss is
MSE / 2 between them, per level, summed over levels (weight 6 per level). Being invariant to each
channel's scale and offset, it needs no tuning when teacher and student magnitudes differ. A 1x1 adapter
(trained, dropped at inference) maps student to teacher width when they differ. Combinable with any
response method (`ftpd+pkd`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ftpdet.config import PKDConfig
from ftpdet.distill.base import StepContext, channel_adapter


def channel_zscore(x: torch.Tensor) -> torch.Tensor:
    dims = (0, 2, 3)
    return (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-6)


class PKD(nn.Module):
    def __init__(self, cfg: PKDConfig, student, teacher, **_) -> None:
        super().__init__()
        self.cfg = cfg
        self.adapter = channel_adapter(student.cfg.fpn_channels, teacher.cfg.fpn_channels)

    def forward(self, ctx: StepContext) -> dict:
        loss = sum(
            F.mse_loss(channel_zscore(self.adapter(s.float())), channel_zscore(t.float())) / 2
            for s, t in zip(ctx.s_out["fpn"], ctx.t_out["fpn"])
        )
        return {"distill_pkd": self.cfg.weight * loss}
