"""The GFL detector: normalise -> backbone -> FPN -> GFL head; decode -> NMS for inference.

Images go in as (B, 3, H, W) in [0, 255] (uint8 or float): normalisation lives inside the model so the
exported graph carries its own preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from ftpdet.losses import distance2bbox, integral
from ftpdet.models.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from ftpdet.models.fpn import FPN
from ftpdet.models.gfl_head import GFLHead
from ftpdet.sections import EvalConfig, ModelConfig



@dataclass
class Priors:
    """Per-location geometry, FPN levels concatenated in order (N = sum of H_l * W_l)."""

    points: torch.Tensor  # (N, 2) xy centres in pixels
    strides: torch.Tensor  # (N,)
    anchors: torch.Tensor  # (N, 4) xyxy square anchors of side anchor_scale * stride (ATSS only)
    num_per_level: list[int]


def flatten_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per level (B, K, H, W) -> (B, sum H*W, K), levels concatenated."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)


def decode_boxes(edges: torch.Tensor, priors: Priors) -> torch.Tensor:
    """Integral decode: (B, N, 4 * (reg_max + 1)) edge logits -> (B, N, 4) xyxy pixels of the network input."""
    return distance2bbox(priors.points[None], integral(edges.float()) * priors.strides[None, :, None])


def make_priors(sizes: list[tuple[int, int]], strides: list[int], anchor_scale: float, device: torch.device) -> Priors:
    points, level_strides, counts = [], [], []
    for (h, w), s in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        # Cell centres: (i + 0.5) * stride.
        pts = torch.stack([xs.flatten(), ys.flatten()], -1).float().add_(0.5).mul_(s)
        points.append(pts)
        level_strides.append(torch.full((h * w,), float(s), device=device))
        counts.append(h * w)
    pts = torch.cat(points)
    st = torch.cat(level_strides)
    half = (anchor_scale * st / 2)[:, None]
    return Priors(pts, st, torch.cat([pts - half, pts + half], 1), counts)


class GFLDetector(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.strides = list(cfg.strides)
        self.backbone = build_backbone(cfg.backbone, cfg.width_mult, cfg.backbone_weights)
        self.fpn = FPN(self.backbone.out_channels, cfg.fpn_channels, len(self.strides), cfg.fpn_relu_before_p7)
        self.head = GFLHead(num_classes, cfg.fpn_channels, cfg.head_channels, cfg.num_convs, cfg.reg_max, len(self.strides))
        # The input normalisation the backbone's weights expect: ImageNet's, or a timm model's own.
        mean, std = getattr(self.backbone, "mean", IMAGENET_MEAN), getattr(self.backbone, "std", IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        self._priors: dict[tuple, Priors] = {}
        # BatchNorms that stay in eval mode while the detector trains (frozen stages, norm_eval), by name: DDP's
        # SyncBatchNorm conversion replaces the modules themselves
        fixed: set[nn.Module] = set()
        if cfg.frozen_stages >= 0:
            for stage in self.backbone.stages(cfg.frozen_stages):
                for p in stage.parameters():
                    p.requires_grad_(False)
                fixed |= {m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)}
        if cfg.norm_eval:
            fixed |= {m for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d)}
        self._fixed_norms = sorted(name for name, m in self.named_modules() if m in fixed)

    def train(self, mode: bool = True) -> GFLDetector:
        super().train(mode)
        for name in self._fixed_norms:
            self.get_submodule(name).eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, list]:
        """images (B, 3, H, W) in [0, 255]. Returns the head's per-level outputs plus `fpn` features."""
        x = (images.float() - self.mean) / self.std
        feats = self.fpn(self.backbone(x))
        out = self.head(feats)
        out["fpn"] = feats
        return out

    def priors(self, outputs: dict[str, list]) -> Priors:
        sizes = [tuple(m.shape[-2:]) for m in outputs["cls_logits"]]
        device = outputs["cls_logits"][0].device
        key = (tuple(sizes), str(device))
        if key not in self._priors:
            self._priors[key] = make_priors(sizes, self.strides, self.cfg.anchor_scale, device)
        return self._priors[key]

    def decode(self, outputs: dict[str, list]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores (B, N, C) in [0, 1] and boxes (B, N, 4) xyxy pixels of the network input."""
        scores = flatten_levels(outputs["cls_logits"]).float().sigmoid()
        return scores, decode_boxes(flatten_levels(outputs["edge_logits"]), self.priors(outputs))

    @property
    def device(self) -> torch.device:
        """Where inputs go (the Predictor protocol, ftpdet.predictor)."""
        return self.mean.device

    @torch.no_grad()
    def predict(self, images: torch.Tensor, cfg: EvalConfig) -> list[dict[str, torch.Tensor]]:
        """Detections per image: boxes (K, 4) xyxy in input pixels, scores (K,), labels (K,), K <= max_dets.
        Always in eval mode (BatchNorm's running statistics); a model in training goes back to training after."""
        was_training = self.training
        self.eval()
        try:
            scores, boxes = self.decode(self(images))
        finally:
            self.train(was_training)
        return [postprocess(s, b, cfg, images.shape[-2:]) for s, b in zip(scores, boxes)]


def postprocess(scores: torch.Tensor, boxes: torch.Tensor, cfg: EvalConfig, image_hw) -> dict[str, torch.Tensor]:
    """One image: scores (N, C), boxes (N, 4) -> score threshold, top-k, clip, class-wise NMS, max_dets."""
    num_classes = scores.shape[1]
    flat = scores.flatten()  # (N * C,): a location may yield several classes, as in GFL/FCOS
    keep = flat > cfg.score_thr
    cand_scores = flat[keep]
    cand_idx = keep.nonzero().squeeze(1)
    if cand_scores.numel() > cfg.pre_nms_topk:
        cand_scores, top = cand_scores.topk(cfg.pre_nms_topk)
        cand_idx = cand_idx[top]
    loc, labels = cand_idx // num_classes, cand_idx % num_classes
    b = clip_boxes_to_image(boxes[loc], (int(image_hw[0]), int(image_hw[1])))
    kept = batched_nms(b, cand_scores, labels, cfg.nms_iou)[: cfg.max_dets]
    return {"boxes": b[kept], "scores": cand_scores[kept], "labels": labels[kept]}


def build_detector(cfg: ModelConfig, num_classes: int) -> GFLDetector:
    return GFLDetector(cfg, num_classes)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (frozen BatchNorm statistics) and no gradient: how a teacher is held."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
