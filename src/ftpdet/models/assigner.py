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


@dataclass
class BatchAssignResult:
    """ATSS over a batch whose gt lists are padded to the longest (G = max boxes per image)."""

    gt_index: torch.Tensor  # (B, N) long: index of the assigned gt in its image's list, -1 = background
    iou_thr: torch.Tensor  # (B, G)
    ious: torch.Tensor  # (B, N, G); padded columns are 0
    num_gts: list[int]  # boxes per image: the valid columns of each row

    def image(self, b: int) -> AssignResult:
        """Image b's result, as `atss_assign` gives it."""
        g = self.num_gts[b]
        return AssignResult(self.gt_index[b], self.iou_thr[b, :g], self.ious[b, :, :g])


@torch.no_grad()
def atss_assign(
    anchors: torch.Tensor, num_per_level: list[int], gt_boxes: torch.Tensor, topk: int = 9, fallback: bool = True
) -> AssignResult:
    """anchors (N, 4) xyxy, levels concatenated in order; gt_boxes (G, 4) xyxy. Same units for both."""
    return atss_assign_batch(anchors, num_per_level, [gt_boxes], topk, fallback).image(0)


@torch.no_grad()
def atss_assign_batch(
    anchors: torch.Tensor, num_per_level: list[int], gt_boxes: list[torch.Tensor], topk: int = 9, fallback: bool = True
) -> BatchAssignResult:
    """ATSS for every image at once: the gt lists (each (G_b, 4) xyxy) are padded to the longest and the padding
    masked out, so one set of tensor operations replaces a Python loop over images (the assignment was ~9 ms of
    a ~100 ms CPU step with the loop). Each image's result equals what it would get alone."""
    n, b = anchors.shape[0], len(gt_boxes)
    num_gts = [int(g.shape[0]) for g in gt_boxes]
    g = max(num_gts, default=0)
    if g == 0:
        return BatchAssignResult(anchors.new_full((b, n), -1, dtype=torch.long), anchors.new_zeros(b, 0),
                                 anchors.new_zeros(b, n, 0), num_gts)
    gts = anchors.new_zeros(b, g, 4)  # (B, G, 4)
    valid = torch.zeros(b, g, dtype=torch.bool, device=anchors.device)  # (B, G)
    for i, boxes in enumerate(gt_boxes):
        gts[i, : num_gts[i]] = boxes.to(anchors)
        valid[i, : num_gts[i]] = True
    ious = box_iou(anchors, gts.reshape(-1, 4)).reshape(n, b, g).permute(1, 0, 2) * valid[:, None]  # (B, N, G)
    a_ctr = (anchors[:, :2] + anchors[:, 2:]) / 2  # (N, 2)
    g_ctr = (gts[..., :2] + gts[..., 2:]) / 2  # (B, G, 2)
    dist = torch.cdist(a_ctr[None].expand(b, n, 2), g_ctr)  # (B, N, G)

    candidates = []
    start = 0
    for count in num_per_level:
        k = min(topk, count)
        # A stable sort, not topk: among equally distant locations (common when box and anchor centres sit on
        # the same half-pixel grid) the lower index wins, whatever the batch's shape, so an image's assignment
        # does not depend on which images share its batch (topk's choice among ties does).
        idx = dist[:, start : start + count].argsort(dim=1, stable=True)[:, :k]  # (B, k, G)
        candidates.append(idx + start)
        start += count
    cand = torch.cat(candidates, 1)  # (B, K, G) location indices
    cand_iou = ious.gather(1, cand)  # (B, K, G)
    iou_thr = cand_iou.mean(1) + cand_iou.std(1)  # (B, G)
    is_pos = (cand_iou >= iou_thr[:, None]) & valid[:, None]

    # Centre of the candidate location strictly inside its gt box (ATSS requires a margin > 0.01).
    cx, cy = a_ctr[cand, 0], a_ctr[cand, 1]  # (B, K, G)
    gb = gts[:, None]  # (B, 1, G, 4)
    inside = torch.stack([cx - gb[..., 0], cy - gb[..., 1], gb[..., 2] - cx, gb[..., 3] - cy], -1).amin(-1) > 0.01
    is_pos &= inside

    # Several gts may claim one location: keep the gt with the highest IoU.
    claimed = torch.full_like(ious, -1.0)  # (B, N, G)
    bi, _, gi = is_pos.nonzero(as_tuple=True)
    li = cand[is_pos]
    claimed[bi, li, gi] = ious[bi, li, gi]
    best_iou, best_gt = claimed.max(2)  # (B, N)
    gt_index = torch.where(best_iou >= 0, best_gt, torch.full_like(best_gt, -1))
    if fallback:
        _fallback(gt_index, cand, dist, valid)
    return BatchAssignResult(gt_index, iou_thr * valid, ious, num_gts)


def _fallback(gt_index: torch.Tensor, cand: torch.Tensor, dist: torch.Tensor, valid: torch.Tensor) -> None:
    """In place: each valid gt without a positive takes its nearest candidate location that no box holds. Boxes go
    in index order within an image (a rescued box's location is taken for the next); images are independent, so
    the loop runs over the gt index, all images together."""
    b, _, g = cand.shape
    rows = torch.arange(b, device=cand.device)
    for j in range(g):
        assigned = gt_index.eq(j).any(1)  # (B,)
        need = valid[:, j] & ~assigned
        if not need.any():
            continue
        cj = cand[:, :, j]  # (B, K) this box's candidates
        order = dist[rows[:, None], cj, j].argsort(dim=1, stable=True)  # nearest first, first of equals kept
        ordered = cj.gather(1, order)  # (B, K)
        free = gt_index.gather(1, ordered) < 0  # (B, K)
        has_free = free.any(1) & need
        first = free.float().argmax(1)  # first free candidate (argmax returns the first maximum)
        take = ordered[rows, first]
        gt_index[rows[has_free], take[has_free]] = j
