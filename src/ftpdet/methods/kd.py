"""`kd`: Hinton-style knowledge distillation on class scores, adapted to sigmoid detectors (baseline).

Binary KD between sigmoid(z_s / T) and sigmoid(z_t / T) at every location, weighted by the teacher's
max score so the background majority does not drown the signal, normalised by the weight sum.
On unlabeled images (data.unlabeled): the same, at every location; it reads no label.
"""

from __future__ import annotations

from pydantic import Field

from ftpdet.methods.base import Method, StepContext
from ftpdet.methods.functional import binary_kd, normalised
from ftpdet.sections import Section


class KDConfig(Section):
    """Hinton-style KD on class scores: BCE(sigmoid(z_s / T), sigmoid(z_t / T)), teacher-confidence weighted."""

    temperature: float = Field(2.0, gt=0)
    weight: float = Field(1.0, ge=0)


class KD(Method):
    Config = KDConfig

    @staticmethod
    def weights(cfg: KDConfig) -> dict[str, float]:
        return {"distill_kd_cls": cfg.weight}

    def forward(self, ctx: StepContext) -> dict:
        T = self.cfg.temperature
        w = ctx.t_conf  # (B, N)
        per_loc = binary_kd(ctx.s_cls / T, (ctx.t_cls / T).sigmoid()).sum(-1)  # (B, N)
        return {"distill_kd_cls": normalised((per_loc * w).sum(), w.sum())}
