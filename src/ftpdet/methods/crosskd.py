"""`crosskd`: CrossKD (Wang et al., CVPR 2024) (baseline).

The student's tower features at a layer (pre-activation; default the teacher's last-but-one layer, i.e.
CrossKD's "after conv 3 of 4") are re-scaled per channel to the teacher's mean / std there, passed through
ReLU and the frozen teacher head's remaining layers and predictors. The cross-head outputs mimic the
teacher: classes by binary KD modulated by |p_cross - p_t| (weight 1, normalised by positives); edges by
KL at T = 1 summed over bins (weight 3) and GIoU of decoded boxes (weight 2), both weighted per location
by the teacher's max score. The student's own head sees only ground truth. A 1x1 adapter bridges widths.
On unlabeled images (data.unlabeled): every term runs at every location; the class term's normaliser, the number of
positives, counts there the positives ATSS gives the teacher's detections above `distill.unlabeled_score_thr` (our
extension, docs/distillation.md).
"""

from __future__ import annotations

from pydantic import Field

from ftpdet.losses import giou_loss
from ftpdet.methods.base import CrossHead, Method, StepContext
from ftpdet.methods.functional import binary_kd, edge_kl, normalised, split_edges
from ftpdet.models.detector import decode_boxes
from ftpdet.sections import Section


class CrossKDConfig(Section):
    """CrossKD (Wang et al., CVPR 2024): student tower features -> the frozen teacher head's remaining layers."""

    layer: int | None = Field(None, ge=0)  # tower layer to tap (None: the teacher's last-but-one, CrossKD's 3 of 4)
    cls_weight: float = Field(1.0, ge=0)
    reg_weight: float = Field(3.0, ge=0)  # KL at T = 1 on edge distributions, summed over bins
    giou_weight: float = Field(2.0, ge=0)


class CrossKD(Method):
    Config = CrossKDConfig

    def __init__(self, cfg: CrossKDConfig, student, teacher) -> None:
        super().__init__(cfg, student, teacher)
        layer = cfg.layer if cfg.layer is not None else max(0, teacher.head.num_convs - 1)
        layer = min(layer, student.head.num_convs)
        self.cross = CrossHead(student, teacher, layer, align="stats", pre_activation=True)

    @staticmethod
    def weights(cfg: CrossKDConfig) -> dict[str, float]:
        return {"distill_crosskd_cls": cfg.cls_weight, "distill_crosskd_reg": cfg.reg_weight,
                "distill_crosskd_giou": cfg.giou_weight}

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
            "distill_crosskd_cls": normalised(cls, ctx.targets.pos.sum().float()),
            "distill_crosskd_reg": normalised((kl.mean(-1) * w).sum(), w.sum()),
            "distill_crosskd_giou": normalised((giou * w).sum(), w.sum()),
        }
