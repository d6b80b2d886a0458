"""GFL's loss terms and box coding, as pure per-element functions.

Callers choose the normaliser (number of positives, sum of weights) and say why; these functions do
not reduce. Box format everywhere: xyxy in pixels unless a name says "stride units".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss


def quality_focal_loss(logits: torch.Tensor, score: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """QFL (GFL eq. 5) with a dense target.

    logits: (N, C) class logits. score: (N, C) soft target in [0, 1]: IoU of the predicted box with
    its ground truth at the assigned class of a positive location, 0 elsewhere (negatives are
    supervised by a 0 quality score). Returns (N, C):
    BCE(sigmoid(logits), score) * |score - sigmoid(logits)|^beta.
    """
    sigma = logits.sigmoid()
    modulator = (score - sigma).abs().pow(beta)
    return F.binary_cross_entropy_with_logits(logits, score, reduction="none") * modulator


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL (GFL eq. 6): push probability onto the two bins around a continuous target.

    logits: (N, n + 1) bin logits; target: (N,) in [0, n) stride units. Returns (N,):
    (y_r - y) * CE(logits, y_l) + (y - y_l) * CE(logits, y_r), with y_l = floor(y), y_r = y_l + 1.
    """
    left = target.floor().long()
    right = left + 1
    w_left = right.float() - target
    w_right = target - left.float()
    return F.cross_entropy(logits, left, reduction="none") * w_left + F.cross_entropy(
        logits, right, reduction="none"
    ) * w_right


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU per box pair: pred, target (N, 4) xyxy. Returns (N,) in [0, 2]."""
    return generalized_box_iou_loss(pred, target, reduction="none")


def aligned_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of box pairs a[i], b[i]: (P, 4) xyxy -> (P,). (torchvision's box_iou is all-pairs, P x P.)"""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a + area_b - inter).clamp(min=1e-6)


def integral(edge_logits: torch.Tensor) -> torch.Tensor:
    """Expected distance of each edge distribution: (..., 4 * (n + 1)) logits -> (..., 4) stride units."""
    n1 = edge_logits.shape[-1] // 4
    prob = edge_logits.reshape(*edge_logits.shape[:-1], 4, n1).softmax(-1)  # (..., 4, n + 1)
    bins = torch.arange(n1, device=edge_logits.device, dtype=prob.dtype)
    return (prob * bins).sum(-1)


def distance2bbox(points: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """points (..., 2) xy pixels, distance (..., 4) ltrb pixels -> boxes (..., 4) xyxy pixels."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x - distance[..., 0], y - distance[..., 1], x + distance[..., 2], y + distance[..., 3]], -1)


def bbox2distance(points: torch.Tensor, boxes: torch.Tensor, max_dist: float | None = None) -> torch.Tensor:
    """Inverse of distance2bbox: (..., 2), (..., 4) -> ltrb (..., 4), optionally clamped to [0, max_dist]."""
    x, y = points[..., 0], points[..., 1]
    d = torch.stack([x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y], -1)
    if max_dist is not None:
        d = d.clamp(min=0, max=max_dist)
    return d
