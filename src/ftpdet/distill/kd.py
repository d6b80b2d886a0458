"""`kd`: Hinton-style knowledge distillation on class scores, adapted to sigmoid detectors (baseline).

Binary KD between sigmoid(z_s / T) and sigmoid(z_t / T) at every location, weighted by the teacher's
max score so the background majority does not drown the signal, normalised by the weight sum.
"""

from __future__ import annotations

from torch import nn

from ftpdet.config import KDConfig
from ftpdet.distill.base import StepContext
from ftpdet.distill.functional import binary_kd, normalised


class KD(nn.Module):
    def __init__(self, cfg: KDConfig, **_) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, ctx: StepContext) -> dict:
        T = self.cfg.temperature
        w = ctx.t_conf  # (B, N)
        per_loc = binary_kd(ctx.s_cls / T, (ctx.t_cls / T).sigmoid()).sum(-1)  # (B, N)
        return {"distill_kd_cls": self.cfg.weight * normalised((per_loc * w).sum(), w.sum())}
