"""Labels assigned by the teacher (FTPD's `pd.assign`): GFL's own three terms on the locations that TOOD's
task-aligned assignment picks from the teacher's scores and boxes (models/task_aligned.py), beside the task loss
on ATSS's positives.

The terms are what models/criterion.GFLLoss computes for ATSS's positives, for another assignment: QFL to the IoU of
the student's box at the positives (0 elsewhere), normalised by their number; DFL and GIoU at the positives weighted
by the student's max score and normalised by its sum (tests/test_teacher_labels.py checks they equal GFLLoss's
when given ATSS's assignment). They are returned raw; FTPD weighs them with GFL's weights.
"""

from __future__ import annotations

import torch

from ftpdet.distributed import normaliser
from ftpdet.losses import aligned_iou, bbox2distance, distance2bbox, distribution_focal_loss, giou_loss, integral, quality_focal_loss
from ftpdet.models.detector import Priors, decode_boxes
from ftpdet.models.task_aligned import task_aligned_assign

QFL_BETA = 2.0  # GFL's (LossConfig.qfl_beta's default)


def padded_gts(targets) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's ground truth as (B, G, 4) boxes and (B, G) labels padded with -1. A box's label is read where ATSS
    placed it (its fallback gives every box a location unless all of its candidates are taken; such a box keeps -1
    and is skipped). At least one column, padding when a batch holds no box, so the gathers have a column to read."""
    b = targets.pos.shape[0]
    g = max((len(x) for x in targets.gt_boxes), default=0) or 1
    boxes = targets.boxes.new_zeros(b, g, 4)
    labels = torch.full((b, g), -1, dtype=torch.long, device=targets.labels.device)
    for i, gt in enumerate(targets.gt_boxes):
        boxes[i, : len(gt)] = gt.to(boxes)
        idx = targets.assign[i].gt_index
        labels[i].scatter_(0, idx[idx >= 0], targets.labels[i][idx >= 0])
    return boxes, labels


def gfl_terms(cls: torch.Tensor, edges: torch.Tensor, priors: Priors, gt_index: torch.Tensor, gt_boxes: torch.Tensor,
              gt_labels: torch.Tensor, reg_max: int) -> dict[str, torch.Tensor]:
    """QFL, DFL and GIoU (raw) of cls (B, N, C) and edges (B, N, 4 * (reg_max + 1)) logits for an assignment gt_index
    (B, N) into gt_boxes (B, G, 4) / gt_labels (B, G)."""
    b, n, _ = cls.shape
    pos = gt_index >= 0  # (B, N)
    safe = gt_index.clamp(min=0)
    box = gt_boxes.gather(1, safe[..., None].expand(b, n, 4))[pos]  # (P, 4)
    label = gt_labels.gather(1, safe)[pos]  # (P,)
    pts = priors.points[None].expand(b, n, 2)[pos]  # (P, 2)
    strides = priors.strides[None].expand(b, n)[pos][:, None]  # (P, 1)
    pred_box = distance2bbox(pts, integral(edges[pos]) * strides)
    score = torch.zeros_like(cls)
    score[pos, label] = aligned_iou(pred_box.detach(), box)
    weight = cls[pos].detach().sigmoid().amax(1)  # (P,)
    weight_sum = normaliser(weight.sum())
    target = (bbox2distance(pts, box) / strides).clamp(0, reg_max - 0.01)  # (P, 4) stride units
    dfl = distribution_focal_loss(edges[pos].reshape(-1, reg_max + 1), target.reshape(-1)).reshape(-1, 4).mean(1)
    return {
        "qfl": quality_focal_loss(cls, score, QFL_BETA).sum() / normaliser(pos.sum().float()),
        "dfl": (dfl * weight).sum() / weight_sum,
        "giou": (giou_loss(pred_box, box) * weight).sum() / weight_sum,
    }


def teacher_assigned_terms(ctx) -> dict[str, torch.Tensor]:
    """GFL's terms of the student's outputs (a methods.base.StepContext's) on the teacher's task-aligned
    assignment."""
    gt_boxes, gt_labels = padded_gts(ctx.targets)
    t_box = decode_boxes(ctx.t_edges, ctx.priors)  # (B, N, 4)
    gt_index = task_aligned_assign(ctx.t_cls.sigmoid(), t_box, ctx.priors.points, gt_boxes, gt_labels)
    return gfl_terms(ctx.s_cls, ctx.s_edges, ctx.priors, gt_index, gt_boxes, gt_labels, ctx.reg_max)
