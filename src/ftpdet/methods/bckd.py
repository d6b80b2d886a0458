"""`bckd`: Bridging Cross-task Protocol Inconsistency (Yang et al., ICCV 2023) (baseline).

Classes: binary KD to sigmoid(z_t), modulated by |sigmoid(z_t) - sigmoid(z_s)| (QFL with beta = 1), at all
locations, normalised by the number of positives; weight 1. Boxes: GIoU between the student's and the
teacher's decoded boxes at all locations, weighted by max_c |sigmoid(z_t,c) - sigmoid(z_s,c)| (where the two
disagree on classes, boxes matter most), normalised by the number of positives as the BCKD repository does
(`loss_score_kd`, avg_factor = num_total_samples), not by the sum of those weights; weight 4.
On unlabeled images (data.unlabeled): both terms run at every location; their normaliser, the number of positives,
counts there the positives ATSS gives the teacher's detections above `distill.unlabeled_score_thr` (our extension,
docs/distillation.md).
"""

from __future__ import annotations

from pydantic import Field

from ftpdet.losses import giou_loss
from ftpdet.methods.base import Method, StepContext
from ftpdet.methods.functional import binary_kd, normalised
from ftpdet.models.detector import decode_boxes
from ftpdet.sections import Section


class BCKDConfig(Section):
    """BCKD (Yang et al., ICCV 2023): binary class distillation + GIoU between decoded boxes, all locations."""

    cls_weight: float = Field(1.0, ge=0)
    box_weight: float = Field(4.0, ge=0)


class BCKD(Method):
    Config = BCKDConfig

    @staticmethod
    def weights(cfg: BCKDConfig) -> dict[str, float]:
        return {"distill_bckd_cls": cfg.cls_weight, "distill_bckd_box": cfg.box_weight}

    def forward(self, ctx: StepContext) -> dict:
        t_prob = ctx.t_cls.sigmoid()
        cls = binary_kd(ctx.s_cls, t_prob, gamma=1.0).sum()
        num_pos = ctx.targets.pos.sum().float()
        w = (t_prob - ctx.s_cls.detach().sigmoid()).abs().amax(-1)  # (B, N)
        s_box, t_box = decode_boxes(ctx.s_edges, ctx.priors), decode_boxes(ctx.t_edges, ctx.priors)
        giou = giou_loss(s_box.reshape(-1, 4), t_box.reshape(-1, 4)).reshape(w.shape)
        return {
            "distill_bckd_cls": normalised(cls, num_pos),
            "distill_bckd_box": normalised((giou * w).sum(), num_pos),
        }
