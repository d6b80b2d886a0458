"""Task-aligned assignment (TOOD, Feng et al., ICCV 2021), run on a detector's predictions.

Each ground-truth box scores every location by t = s^alpha * u^beta, s the predicted score of the box's class and u
the IoU of the predicted box with it; the `topk` best-scoring locations whose centre lies inside the box (and whose t
is above 0) become its positives. A location claimed by several boxes goes to the one its predicted box overlaps
most. TOOD's constants: topk 13, alpha 1, beta 6. The centres are restricted to the box before the top-k (as
PP-YOLOE and YOLOv8 do; mmdetection's assigner takes the top-k first), so a box always gets its k best inside
locations.

FTPD's `pd.assign` runs it on the teacher's predictions (LAD's idea, Nguyen et al., WACV 2022: labels assigned by a
trained teacher, stable from the first step, instead of by geometry alone). A box with no location centre inside it
(smaller than the stride) gets no positive here; ATSS's fallback still gives it one in the task loss.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou


@torch.no_grad()
def task_aligned_assign(
    scores: torch.Tensor,
    boxes: torch.Tensor,
    points: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    topk: int = 13,
    alpha: float = 1.0,
    beta: float = 6.0,
) -> torch.Tensor:
    """scores (B, N, C) probabilities, boxes (B, N, 4) xyxy predicted, points (N, 2) location centres; gt_boxes
    (B, G, 4) xyxy and gt_labels (B, G) long, padded with label -1. Returns gt_index (B, N) long: the index of each
    location's box in its image's list, -1 = background."""
    b, n, _ = scores.shape
    g = gt_boxes.shape[1]
    if g == 0:
        return torch.full((b, n), -1, dtype=torch.long, device=scores.device)
    valid = gt_labels >= 0  # (B, G)
    ious = torch.stack([box_iou(boxes[i].float(), gt_boxes[i].float()) for i in range(b)])  # (B, N, G)
    cls = scores.float().gather(2, gt_labels.clamp(min=0)[:, None, :].expand(b, n, g))  # (B, N, G)
    metric = cls.pow(alpha) * ious.pow(beta)
    x, y = points[None, :, None, 0], points[None, :, None, 1]  # (1, N, 1)
    gb = gt_boxes[:, None]  # (B, 1, G, 4)
    inside = torch.stack([x - gb[..., 0], y - gb[..., 1], gb[..., 2] - x, gb[..., 3] - y], -1).amin(-1) > 1e-9
    metric = metric * (inside & valid[:, None]).float()  # (B, N, G)
    top = metric.topk(min(topk, n), dim=1).indices  # (B, k, G)
    chosen = torch.zeros_like(metric, dtype=torch.bool).scatter_(1, top, True)
    is_pos = chosen & (metric > 0)
    claimed = torch.where(is_pos, ious, torch.full_like(ious, -1.0))  # several boxes: the best-overlapping one
    best_iou, best_gt = claimed.max(2)  # (B, N)
    return torch.where(best_iou >= 0, best_gt, torch.full_like(best_gt, -1))
