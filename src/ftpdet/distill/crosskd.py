"""`crosskd`: CrossKD (Wang et al., CVPR 2024) (baseline).

The student's tower features at a layer (pre-activation; default the teacher's last-but-one layer, i.e.
CrossKD's "after conv 3 of 4") are re-scaled per channel to the teacher's mean / std there, passed through
ReLU and the frozen teacher head's remaining layers and predictors. The cross-head outputs mimic the
teacher: classes by binary KD modulated by |p_cross - p_t| (weight 1, normalised by positives); edges by
KL at T = 1 summed over bins (weight 3) and GIoU of decoded boxes (weight 2), both weighted per location
by the teacher's max score. The student's own head sees only ground truth. A 1x1 adapter bridges widths.
"""

from __future__ import annotations

from torch import nn

from ftpdet.config import CrossKDConfig
from ftpdet.distill.base import CrossHead, StepContext
from ftpdet.distill.functional import binary_kd, edge_kl, normalised, split_edges
from ftpdet.losses import giou_loss
from ftpdet.models.detector import decode_boxes


class CrossKD(nn.Module):
    def __init__(self, cfg: CrossKDConfig, student, teacher, **_) -> None:
        super().__init__()
        self.cfg = cfg
        layer = cfg.layer if cfg.layer is not None else max(0, teacher.head.num_convs - 1)
        layer = min(layer, student.head.num_convs)
        self.cross = CrossHead(student, teacher, layer, align="stats", pre_activation=True)

    def forward(self, ctx: StepContext) -> dict:
        c_cls, c_edges = self.cross(ctx)  # (B, N, C), (B, N, 4 * (n + 1))
        t_prob = ctx.t_cls.sigmoid()
        cls = binary_kd(c_cls, t_prob, gamma=1.0).sum()
        w = ctx.t_conf  # (B, N)
        n1 = ctx.reg_max + 1
        kl = edge_kl(split_edges(c_edges).reshape(-1, n1), split_edges(ctx.t_edges).reshape(-1, n1)).reshape(*w.shape, 4)
        giou = giou_loss(decode_boxes(c_edges, ctx.priors).reshape(-1, 4),
                         decode_boxes(ctx.t_edges, ctx.priors).reshape(-1, 4)).reshape(w.shape)
        return {
            "distill_crosskd_cls": self.cfg.cls_weight * normalised(cls, ctx.targets.pos.sum().float()),
            "distill_crosskd_reg": self.cfg.reg_weight * normalised((kl.mean(-1) * w).sum(), w.sum()),
            "distill_crosskd_giou": self.cfg.giou_weight * normalised((giou * w).sum(), w.sum()),
        }
