"""ATSS: Adaptive Training Sample Selection (Zhang et al., CVPR 2020), as GFL uses it.

For each ground-truth box: take the `topk` locations per FPN level whose anchor centres are closest to
the box centre; their IoUs with the box give an adaptive threshold mean + std; candidates at or above
it whose centre lies inside the box become positives. A location claimed by several boxes goes to the
one it overlaps most.

Small-image extension (`fallback`, on by default): a box that ends up with no positive at all, because
it is smaller than the stride and holds no location centre, or because larger boxes took its shared
locations, gets its nearest candidate location that no other box has claimed. Without it ~8% of the
built-in dataset's boxes (the 5-8 px ones) could never be learnt; see tests/test_assigner.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou


@dataclass
class AssignResult:
    gt_index: torch.Tensor  # (N,) long: index of the assigned gt box per location, -1 = background
    iou_thr: torch.Tensor  # (G,) the adaptive threshold mean + std of each gt (LD's VLR reuses it)
    ious: torch.Tensor  # (N, G) anchor-gt IoU


@torch.no_grad()
def atss_assign(
    anchors: torch.Tensor, num_per_level: list[int], gt_boxes: torch.Tensor, topk: int = 9, fallback: bool = True
) -> AssignResult:
    """anchors (N, 4) xyxy, levels concatenated in order; gt_boxes (G, 4) xyxy. Same units for both."""
    n, g = anchors.shape[0], gt_boxes.shape[0]
    if g == 0:
        return AssignResult(anchors.new_full((n,), -1, dtype=torch.long), anchors.new_zeros(0), anchors.new_zeros(n, 0))
    ious = box_iou(anchors, gt_boxes)  # (N, G)
    a_ctr = (anchors[:, :2] + anchors[:, 2:]) / 2  # (N, 2)
    g_ctr = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # (G, 2)
    dist = torch.cdist(a_ctr, g_ctr)  # (N, G)

    candidates = []
    start = 0
    for count in num_per_level:
        k = min(topk, count)
        _, idx = dist[start : start + count].topk(k, dim=0, largest=False)  # (k, G)
        candidates.append(idx + start)
        start += count
    cand = torch.cat(candidates)  # (K, G) location indices
    cols = torch.arange(g, device=anchors.device)
    cand_iou = ious[cand, cols]  # (K, G)
    iou_thr = cand_iou.mean(0) + cand_iou.std(0)  # (G,)
    is_pos = cand_iou >= iou_thr

    # Centre of the candidate location strictly inside its gt box (ATSS requires a margin > 0.01).
    cx, cy = a_ctr[cand, 0], a_ctr[cand, 1]  # (K, G)
    inside = torch.stack(
        [cx - gt_boxes[:, 0], cy - gt_boxes[:, 1], gt_boxes[:, 2] - cx, gt_boxes[:, 3] - cy], -1
    ).amin(-1) > 0.01
    is_pos &= inside

    # Several gts may claim one location: keep the gt with the highest IoU.
    claimed = torch.full_like(ious, -1.0)
    claimed[cand[is_pos], cols.expand_as(cand)[is_pos]] = ious[cand[is_pos], cols.expand_as(cand)[is_pos]]
    best_iou, best_gt = claimed.max(1)
    gt_index = torch.where(best_iou >= 0, best_gt, torch.full_like(best_gt, -1))
    if fallback:
        has_pos = torch.bincount(gt_index[gt_index >= 0], minlength=g) > 0
        for j in (~has_pos).nonzero().flatten().tolist():
            order = dist[cand[:, j], j].argsort()  # this box's candidates, nearest first
            free = cand[order, j][gt_index[cand[order, j]] < 0]
            if free.numel():
                gt_index[free[0]] = j
    return AssignResult(gt_index, iou_thr, ious)
