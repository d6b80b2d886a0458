"""`ld`: Localization Distillation (Zheng et al., CVPR 2022), the original repository's full scheme (baseline).

Per edge, KL(softmax(r_t / tau) || softmax(r_s / tau)) averaged over the n + 1 bins, times tau^2, tau = 10.
Terms and normalisers as the LD repository (HikariTJU/LD, `LDHead.loss_single`) computes them:
- main region: the ATSS positives, each edge weighted by the student's max class score (detached); the sum
  over positives and edges divided by avg_factor = 4 (not by the weight sum: only GFL's own box and DFL losses
  are); weight 0.25.
- valuable localization region (VLR): locations whose anchor box has 0.25 t <= DIoU(anchor, gt) < t for some gt
  (t = that gt's ATSS threshold; positives are not excluded), each weighted by its IoU with the best such gt; the
  sum over locations and edges divided by the constant 16; weight 0.25.
- class KD at positives: softmax KL at T = 2 averaged over classes, times T^2, averaged over each FPN level's
  positives and summed over levels; weight 10.
The repository sums the box terms over each GPU's 2 images (`samples_per_gpu=2`) and DDP averages 8 GPUs, so its
loss is a per-image sum times 2. Here, with B images on a process, the same sums are divided by B / 2 (under DDP
each rank divides by its own B / 2, and DDP's average gives the same scale). These normalisers are local: no
collective, as in the repository.
On unlabeled images (data.unlabeled; our extension, docs/distillation.md): the regions are drawn from the teacher's
detections above `distill.unlabeled_score_thr`, assigned by ATSS as labels are (the main region and the class KD at
their positives, the VLR around them), and B counts every image of the step.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torchvision.ops import distance_box_iou

from ftpdet.methods.base import Method, StepContext, zero_like_graph
from ftpdet.methods.functional import edge_kl, split_edges
from ftpdet.sections import Section


REFERENCE_IMAGES_PER_GPU = 2  # the LD (and BCKD) COCO configs: samples_per_gpu=2, 8 GPUs


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
def vlr_weights(ctx: StepContext) -> torch.Tensor:
    """(B, N): the valuable localization region's weights, 0 outside it. A location is in the region of a gt when
    0.25 t <= DIoU(anchor, gt) < t (t: the gt's ATSS threshold, mean + std of its candidates' IoU); its weight is
    its anchor's IoU with the best such gt (the repository's `get_vlr_region`)."""
    weights = []
    for res, gt in zip(ctx.targets.assign, ctx.targets.gt_boxes):
        if gt.numel() == 0:
            weights.append(torch.zeros_like(res.gt_index, dtype=torch.float))
            continue
        diou = distance_box_iou(ctx.priors.anchors, gt.to(ctx.priors.anchors.device))  # (N, G)
        t = res.iou_thr[None]  # (1, G)
        band = (diou >= 0.25 * t) & (diou < t)
        weights.append(torch.where(band, res.ious, torch.zeros_like(res.ious)).amax(1))  # (N,)
    return torch.stack(weights)


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
        # 0 that keeps the graph, as DDP needs.
        cfg, pos = self.cfg, ctx.targets.pos
        per_reference_gpu = pos.shape[0] / REFERENCE_IMAGES_PER_GPU  # this process's images / the repository's 2
        w = ctx.s_cls.detach().sigmoid().amax(-1)[pos]  # (P,)
        kl = location_kl(ctx.s_edges[pos], ctx.t_edges[pos], cfg.temperature)  # (P,) mean over edges
        # sum over positives and edges / avg_factor 4 = sum over positives of the edges' mean
        terms = {"distill_ld": (kl * w).sum() / per_reference_gpu + zero_like_graph(ctx.s_edges)}
        if cfg.vlr:
            w_vlr = vlr_weights(ctx)  # (B, N)
            region = w_vlr > 0
            kl_vlr = location_kl(ctx.s_edges[region], ctx.t_edges[region], cfg.temperature)
            # sum over locations and edges / 16 = sum over locations of the edges' mean / 4
            terms["distill_ld_vlr"] = ((kl_vlr * w_vlr[region]).sum() / 4 / per_reference_gpu
                                       + zero_like_graph(ctx.s_edges))
        if cfg.cls_kd:
            # Softmax KL over classes times T^2, averaged over the C classes (the repository's KD loss: mean over
            # dim 1), then averaged over each level's positives and summed over levels.
            T = cfg.cls_temperature
            kl_cls = edge_kl(ctx.s_cls[pos], ctx.t_cls[pos], T) / ctx.s_cls.shape[-1]  # (P,)
            levels = torch.repeat_interleave(torch.arange(len(ctx.priors.num_per_level), device=pos.device),
                                             torch.tensor(ctx.priors.num_per_level, device=pos.device))  # (N,)
            level = levels.expand_as(pos)[pos]  # (P,) the level of each positive
            count = torch.bincount(level, minlength=len(ctx.priors.num_per_level))  # positives per level
            terms["distill_ld_cls"] = (kl_cls / count[level]).sum() + zero_like_graph(ctx.s_cls)
        return terms
