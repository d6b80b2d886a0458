"""`pkd`: PKD (Cao et al., NeurIPS 2022), feature-based: Pearson correlation between FPN features.

Each channel of student and teacher FPN features is z-scored over (batch, height, width); the loss is
MSE / 2 between them, per level, summed over levels (weight 6 per level). Being invariant to each
channel's scale and offset, it needs no tuning when teacher and student magnitudes differ. A 1x1 adapter
(trained, dropped at inference) maps student to teacher width when they differ. Combinable with any
response method (`ftpd+pkd`).
On unlabeled images (data.unlabeled): the same, their features z-scored with the labeled ones'; it reads no label.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field

from ftpdet.methods.base import Method, StepContext, channel_adapter
from ftpdet.methods.functional import zscore
from ftpdet.sections import Section

CHANNELS = (0, 2, 3)  # z-score each channel over batch, height and width


class PKDConfig(Section):
    """PKD (Cao et al., NeurIPS 2022): MSE between per-channel z-scored FPN features (Pearson correlation)."""

    weight: float = Field(6.0, ge=0)  # per FPN level, as in mmrazor's PKD detection configs


class PKD(Method):
    Config = PKDConfig

    def __init__(self, cfg: PKDConfig, student, teacher) -> None:
        super().__init__(cfg, student, teacher)
        self.adapter = channel_adapter(student.cfg.fpn_channels, teacher.cfg.fpn_channels)

    @staticmethod
    def weights(cfg: PKDConfig) -> dict[str, float]:
        return {"distill_pkd": cfg.weight}

    def forward(self, ctx: StepContext) -> dict:
        loss = sum(
            F.mse_loss(zscore(self.adapter(s.float()), CHANNELS), zscore(t.float(), CHANNELS)) / 2
            for s, t in zip(ctx.s_out["fpn"], ctx.t_out["fpn"])
        )
        return {"distill_pkd": loss}
