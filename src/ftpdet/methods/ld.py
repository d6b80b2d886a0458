"""`ld`: Localization Distillation (Zheng et al., CVPR 2022), the original repository's full scheme (baseline).

Per edge, KL(softmax(r_t / tau) || softmax(r_s / tau)) averaged over the n + 1 bins, times tau^2,
tau = 10, averaged over the 4 edges of a location:
- main region: the ATSS positives, each weighted by the student's max class score (detached, as GFL
  weights its box losses), normalised by the weight sum; weight 0.25.
- valuable localization region (VLR): non-positive locations whose anchor box has
  0.25 t <= DIoU(anchor, gt) < t for some gt, t = that gt's ATSS threshold; same KL, uniform weights; 0.25.
- class KD at positives: KL between softmax(z_t / 2) and softmax(z_s / 2), averaged over the classes, times 4;
  weight 10.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torchvision.ops import distance_box_iou

from ftpdet.methods.base import Method, StepContext, zero_like_graph
from ftpdet.methods.functional import edge_kl, normalised, split_edges
from ftpdet.sections import Section


class LDConfig(Section):
    """Localization Distillation (Zheng et al., CVPR 2022), the original repository's full scheme."""

    temperature: float = Field(10.0, gt=0)
    weight: float = Field(0.25, ge=0)  # main region: the ATSS positives
    vlr: bool = True  # valuable localization region: 0.25 t <= DIoU(anchor, gt) < t, t = ATSS threshold
    vlr_weight: float = Field(0.25, ge=0)
    cls_kd: bool = True  # class KD at positives: softmax KL at cls_temperature
    cls_temperature: float = Field(2.0, gt=0)
    cls_weight: float = Field(10.0, ge=0)


@torch.no_grad()
def vlr_mask(ctx: StepContext) -> torch.Tensor:
    """(B, N) bool: the valuable localization region of each image (positives excluded)."""
    masks = []
    for res, gt in zip(ctx.targets.assign, ctx.targets.gt_boxes):
        if gt.numel() == 0:
            masks.append(torch.zeros_like(res.gt_index, dtype=torch.bool))
            continue
        diou = distance_box_iou(ctx.priors.anchors, gt.to(ctx.priors.anchors.device))  # (N, G)
        t = res.iou_thr[None]  # (1, G)
        masks.append(((diou >= 0.25 * t) & (diou < t)).any(1))
    return torch.stack(masks) & ~ctx.targets.pos


def location_kl(s_edges: torch.Tensor, t_edges: torch.Tensor, tau: float) -> torch.Tensor:
    """(P, 4 * (n + 1)) pairs -> (P,): LD's KL averaged over bins and over the 4 edges, times tau^2."""
    s, t = split_edges(s_edges), split_edges(t_edges)  # (P, 4, n + 1)
    n1 = s.shape[-1]
    return edge_kl(s.reshape(-1, n1), t.reshape(-1, n1), tau).reshape(-1, 4).mean(1) / n1


class LD(Method):
    Config = LDConfig

    @staticmethod
    def weights(cfg: LDConfig) -> dict[str, float]:
        return {"distill_ld": cfg.weight, "distill_ld_vlr": cfg.vlr_weight, "distill_ld_cls": cfg.cls_weight}

    def forward(self, ctx: StepContext) -> dict:
        # No early return when a batch has no positives: every (P, ...) tensor is then empty and each term an exact
        # 0 that keeps the graph, and the normalisers (collectives under DDP) run on every rank.
        cfg, pos = self.cfg, ctx.targets.pos
        w = ctx.s_cls.detach().sigmoid().amax(-1)[pos]  # (P,)
        kl = location_kl(ctx.s_edges[pos], ctx.t_edges[pos], cfg.temperature)
        terms = {"distill_ld": normalised((kl * w).sum(), w.sum())}
        if cfg.vlr:
            region = vlr_mask(ctx)
            kl_vlr = location_kl(ctx.s_edges[region], ctx.t_edges[region], cfg.temperature)
            count = region.sum().float()
            terms["distill_ld_vlr"] = normalised(kl_vlr.sum(), count) + zero_like_graph(ctx.s_edges)
        if cfg.cls_kd:
            # Softmax KL over classes times T^2, averaged over the C classes as the LD repository's KD loss does
            # (mmdetection's knowledge_distillation_kl_div_loss: mean over dim 1); summing instead made this
            # term C times larger and, at weight 10, dominate every other loss.
            T = cfg.cls_temperature
            kl_cls = edge_kl(ctx.s_cls[pos], ctx.t_cls[pos], T) / ctx.s_cls.shape[-1]  # (P,)
            terms["distill_ld_cls"] = normalised(kl_cls.sum(), pos.sum().float())
        return terms
