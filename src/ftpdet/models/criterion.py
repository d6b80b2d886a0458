"""GFL training loss: ATSS assignment, then QFL + DFL + GIoU as named terms (unweighted).

Normalisers follow GFL: QFL by the number of positives; DFL and GIoU by the sum of per-positive
weights w = max class score (detached), so locations the classifier already trusts steer the box
losses more. DFL is also averaged over the 4 edges of a location. Both normalisers are averaged
across DDP ranks so every process scales its gradient the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ftpdet.distributed import normaliser
from ftpdet.losses import aligned_iou, bbox2distance, distance2bbox, distribution_focal_loss, giou_loss, integral, quality_focal_loss
from ftpdet.models.assigner import AssignResult, atss_assign_batch
from ftpdet.models.detector import Priors, flatten_levels
from ftpdet.sections import LossConfig


@dataclass
class Targets:
    """Dense training targets, (B, N, ...) with N locations; distillers reuse them (e.g. LD's regions)."""

    labels: torch.Tensor  # (B, N) long, num_classes = background
    boxes: torch.Tensor  # (B, N, 4) xyxy pixels of the assigned gt (zeros at background)
    pos: torch.Tensor  # (B, N) bool
    assign: list[AssignResult]  # per image, for region definitions that need IoUs or thresholds
    gt_boxes: list[torch.Tensor]  # per image (G, 4)
    # (B,) bool: images whose boxes are labels. On the others (unlabeled images) the boxes are the teacher's
    # detections (models/pseudo_labels.py): the task loss skips them, methods use them where they need positives.
    labeled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.labeled is None:
            self.labeled = torch.ones(self.pos.shape[0], dtype=torch.bool, device=self.pos.device)

    @property
    def all_labeled(self) -> bool:
        return bool(self.labeled.all())


@torch.no_grad()
def build_targets(priors: Priors, targets: list[dict], num_classes: int, topk: int, fallback: bool = True) -> Targets:
    device = priors.points.device
    gts = [t["boxes"].to(device) for t in targets]
    res = atss_assign_batch(priors.anchors, priors.num_per_level, gts, topk, fallback)
    idx = res.gt_index  # (B, N)
    pos = idx >= 0
    b, n = idx.shape
    labels = torch.full_like(idx, num_classes)
    boxes = priors.points.new_zeros(b, n, 4)
    if pos.any():
        # The assigned gt's label and box: per-image lists padded to the longest, then gathered.
        g = max(res.num_gts)
        gt_labels = torch.zeros(b, g, dtype=torch.long, device=device)
        gt_boxes = priors.points.new_zeros(b, g, 4)
        for i, (t, box) in enumerate(zip(targets, gts)):
            gt_labels[i, : box.shape[0]] = t["labels"].to(device)
            gt_boxes[i, : box.shape[0]] = box
        safe = idx.clamp(min=0)
        labels = torch.where(pos, gt_labels.gather(1, safe), labels)
        boxes = torch.where(pos[..., None], gt_boxes.gather(1, safe[..., None].expand(b, n, 4)), boxes)
    labeled = torch.tensor([bool(t.get("labeled", True)) for t in targets], device=device)
    return Targets(labels, boxes, pos, [res.image(i) for i in range(b)], [t["boxes"] for t in targets], labeled)


class GFLLoss:
    """ATSS targets, then GFL's three terms, raw: {loss_qfl, loss_dfl, loss_giou}; their weights (`loss.*`) are
    applied with every other term's by the step (ftpdet.engine.step.weight_table). The terms are the labeled images'
    only: an unlabeled image's boxes (the teacher's) are assigned, for the methods, but never trained on here."""

    def __init__(self, cfg: LossConfig, num_classes: int, reg_max: int, topk: int, fallback: bool = True) -> None:
        self.cfg, self.num_classes, self.reg_max, self.topk, self.fallback = cfg, num_classes, reg_max, topk, fallback

    def __call__(
        self, outputs: dict[str, list], priors: Priors, targets: list[dict]
    ) -> tuple[dict[str, torch.Tensor], Targets]:
        tg = build_targets(priors, targets, self.num_classes, self.topk, self.fallback)
        cls = flatten_levels(outputs["cls_logits"]).float()  # (B, N, C)
        edges = flatten_levels(outputs["edge_logits"]).float()  # (B, N, 4 * (reg_max + 1))
        if tg.all_labeled:
            return self.terms(cls, edges, priors, tg.pos, tg.boxes, tg.labels), tg
        m = tg.labeled  # the labeled images only (the batch's first; a step always has some)
        return self.terms(cls[m], edges[m], priors, tg.pos[m], tg.boxes[m], tg.labels[m]), tg

    def terms(self, cls: torch.Tensor, edges: torch.Tensor, priors: Priors, pos: torch.Tensor, boxes: torch.Tensor,
              labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """QFL, DFL and GIoU of cls (B, N, C) and edges (B, N, 4 * (reg_max + 1)) logits for the positives pos (B, N),
        their assigned boxes (B, N, 4) and labels (B, N)."""
        b, n, c = cls.shape
        num_pos = normaliser(pos.sum().float())

        # No branch on "any positives?": with none, every (P, ...) tensor below is empty, each loss is an exact
        # 0 that keeps the graph (DDP needs a gradient for every parameter), and the normaliser, a collective
        # under DDP, is called on every rank whether or not this rank has positives.
        pts = priors.points[None].expand(b, n, 2)[pos]  # (P, 2)
        strides = priors.strides[None].expand(b, n)[pos][:, None]  # (P, 1)
        pred_box = distance2bbox(pts, integral(edges[pos]) * strides)  # (P, 4) pixels
        gt_box = boxes[pos]
        score = torch.zeros_like(cls)
        score[pos, labels[pos]] = aligned_iou(pred_box.detach(), gt_box)
        weight = cls[pos].detach().sigmoid().amax(1)  # (P,)
        weight_sum = normaliser(weight.sum())  # as GFL: at most a plain sum early on
        loss_giou = (giou_loss(pred_box, gt_box) * weight).sum() / weight_sum
        target_dist = (bbox2distance(pts, gt_box) / strides).clamp(0, self.reg_max - 0.01)  # (P, 4) stride units
        dfl = distribution_focal_loss(edges[pos].reshape(-1, self.reg_max + 1), target_dist.reshape(-1))
        loss_dfl = (dfl.reshape(-1, 4).mean(1) * weight).sum() / weight_sum
        loss_qfl = quality_focal_loss(cls, score, self.cfg.qfl_beta).sum() / num_pos
        return {"loss_qfl": loss_qfl, "loss_dfl": loss_dfl, "loss_giou": loss_giou}

