"""`pseudo`: the control for unlabeled images, not a distillation method: the teacher's detections as hard labels.

Semi-supervised detection's standard use of unlabeled images (Unbiased Teacher, Soft Teacher): on every unlabeled
image, the teacher's detections after NMS scoring above `distill.unlabeled_score_thr` (models/pseudo_labels.py) are
the labels, ATSS assigns them as it assigns ground truth, and GFL's own three terms train the student on them at
GFL's weights (QFL 1, DFL 0.25, GIoU 2), normalised as GFL normalises them over the unlabeled images. Labeled images
are left to the task loss. Any claim that a distillation method uses unlabeled images well has to beat this.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ftpdet.methods.base import Method, StepContext, zero_like_graph
from ftpdet.methods.teacher_labels import gfl_terms, padded_gts
from ftpdet.sections import Section


class PseudoConfig(Section):
    """GFL's loss on the teacher's thresholded detections of unlabeled images, at GFL's own weights."""

    qfl: float = Field(1.0, ge=0)
    dfl: float = Field(0.25, ge=0)
    giou: float = Field(2.0, ge=0)


class Pseudo(Method):
    Config = PseudoConfig

    @staticmethod
    def weights(cfg: PseudoConfig) -> dict[str, float]:
        return {"distill_pseudo_qfl": cfg.qfl, "distill_pseudo_dfl": cfg.dfl, "distill_pseudo_giou": cfg.giou}

    def forward(self, ctx: StepContext) -> dict:
        tg = ctx.targets
        u = ~tg.labeled  # (B,) the unlabeled images; their boxes are the teacher's
        gt_boxes, gt_labels = padded_gts(tg)
        gt_index = torch.stack([a.gt_index for a in tg.assign])  # (B, N) ATSS's assignment of those boxes
        terms = gfl_terms(ctx.s_cls[u], ctx.s_edges[u], ctx.priors, gt_index[u], gt_boxes[u], gt_labels[u],
                          ctx.reg_max)
        keep = zero_like_graph(ctx.s_cls, ctx.s_edges)  # a batch without unlabeled images still reaches every output
        return {f"distill_pseudo_{k}": v + keep for k, v in terms.items()}
