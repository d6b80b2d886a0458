"""`ftpd`: Flexible Temperature Parallel Distillation (Song et al., IEEE TCSVT 35(5), 2025), our reading
in DESIGN.md section 4. Three switchable parts, so the ablation is a config change:

- PD (where): all head responses, class scores and the four edge distributions, are distilled in parallel
  at every location, each location weighted by the teacher's confidence (max sigmoid score). `position`
  `output` mimics at the student's own outputs; a tower layer k feeds the student's features after layer k
  through the frozen teacher head's remaining layers (a training-only branch with a 1x1 adapter when widths
  differ), so the student head is not pulled between ground truth and teacher. With PD off, the classic
  region is used instead: the ATSS positives, uniformly weighted, at the student's outputs.
  With `pd.box`, the decoded box too (GIoU to the teacher's box, weighted where the two disagree on classes).
  With `pd.cross_layer` k, both places in parallel: the outputs and a CrossKD-style branch from layer k.
  With `pd.assign`, the teacher's label assignment too: GFL's own terms on the locations TOOD's task-aligned
  assignment picks from the teacher's predictions (methods/teacher_labels.py), beside ATSS's.
- DLT (how, boxes): a per-location, per-edge temperature computed from the distributions
  (methods/temperature.py); off = the plain KL at temperature 1. Modes `quality` and `sharpness` also weight
  each location by the teacher's localisation quality.
- CTF (how, classes): temperature-free class distillation for sigmoid scores (methods/ctf.py); off = plain
  binary KD (no modulation). Mode `dense` returns two terms (binary, relation; the relation term only when
  `rel_weight` > 0).
No field holds a temperature: nothing here is hand-set per dataset.

On unlabeled images (data.unlabeled; our extension, docs/distillation.md): PD's class and edge terms run at every
location of every image, as they need no label. What reads the ground truth reads the teacher's detections above
`distill.unlabeled_score_thr` there, assigned by ATSS: the positives count that normalises the class and `pd.box`
terms, and `pd.assign`'s boxes (the teacher-label term becomes GFL's terms on the teacher's own detections, placed by
its task-aligned assignment). DLT's quality is the teacher's score at every location of an unlabeled image.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ftpdet.losses import aligned_iou, giou_loss
from ftpdet.methods.base import CrossHead, Method, StepContext
from ftpdet.methods.ctf import ctf_loss, dense_ctf
from ftpdet.methods.functional import binary_kd, edge_kl, normalised, split_edges
from ftpdet.methods.teacher_labels import teacher_assigned_terms
from ftpdet.methods.temperature import dlt_kl
from ftpdet.models.detector import decode_boxes
from ftpdet.sections import Section


class PDConfig(Section):
    enabled: bool = True
    # Where student responses are produced for distillation: "output" (the student's own head outputs)
    # or a tower layer k: student features after layer k go through a frozen copy of the teacher head's
    # remaining layers (training only), so the student head is not pulled between labels and teacher.
    # Default "output": over 3 paired lab seeds it is level with layers 0 and 1 (minus output: +0.07 [-0.33,
    # +0.47] and +0.11 [-0.69, +0.91] AP at the earlier CTF/PD defaults), and it runs no teacher-head branch (the
    # quick benchmark's step: 1.04x the floor against 1.14x at layer 0). An earlier single-seed run favoured
    # layer 0 by 1.1 AP (docs/distillation.md); paired seeds did not confirm it.
    position: Literal["output"] | int = "output"
    # The decoded box too: GIoU between the student's and the teacher's boxes at every location, weighted by how
    # much the two disagree on classes (max_c |p_t - p_s|, as BCKD weighs it) and normalised by the positives.
    # The edge distributions alone leave the box NMS ranks to the DFL's expectation. On by measurement: with CTF
    # `dense`, +0.35 [+0.10, +0.61] AP over the earlier defaults (5 paired lab seeds, docs/benchmarks.md).
    box: bool = True
    # A second place, in parallel with `position: output`: the student's tower features after this layer (before
    # its ReLU, re-scaled to the teacher's per-channel statistics, as CrossKD taps them) go through the frozen
    # teacher head's remaining layers, and the same terms are distilled there too (logged as distill_ftpd_x_*, with
    # the same weights). The outputs carry the teacher's knowledge into the student's own head, the branch into its
    # features without pulling that head. None (off) by measurement: layer 1 gave +0.06 [-0.33, +0.44] AP over the
    # defaults on 5 paired lab seeds (docs/benchmarks.md), not resolved.
    cross_layer: int | None = Field(None, ge=0)
    # The teacher's labels: GFL's QFL, DFL and GIoU (at GFL's weights 1, 0.25, 2) on the positives that TOOD's
    # task-aligned assignment picks from the teacher's scores and boxes, beside the task loss on ATSS's positives
    # (LAD's idea: a trained teacher assigns labels better than geometry does). On by measurement: +0.45 [+0.16,
    # +0.73] AP over the earlier defaults on 5 paired lab seeds (docs/benchmarks.md, the notes' "Issue 12").
    assign: bool = True


class DLTConfig(Section):
    enabled: bool = True
    # "quality" chosen by measurement (docs/distillation.md). At the current defaults no other mode beats it or DLT
    # off (5 paired lab seeds, an Intel Xeon, docs/benchmarks.md's notes): "sharpness" (each side its own
    # temperature, the teacher's quality as a weight) -0.07 [-0.36, +0.23] AP, "entropy" -0.01 [-0.10, +0.09], and
    # "std" is harmful, -2.78 [-3.24, -2.33] (it matches edges only up to a scale, and the decoded box moves).
    mode: Literal["std", "entropy", "quality", "sharpness"] = "quality"


class CTFConfig(Section):
    enabled: bool = True
    # "dense" (the published binary term at every location, normalised by the positives, plus a relation term on
    # probabilities weighted by `rel_weight`) by measurement: with PD `box` and no relation term it beats the
    # earlier default "relation" by +0.35 [+0.01, +0.68] AP over 5 paired lab seeds (docs/benchmarks.md). At the
    # current defaults the other modes lose to it (5 paired lab seeds, an Intel Xeon): "binary" -0.44 [-0.55, -0.34],
    # "relation" -0.24 [-0.35, -0.12], "standardized" -0.44 [-0.62, -0.25].
    mode: Literal["binary", "standardized", "relation", "dense"] = "dense"


class FTPDConfig(Section):
    """FTPD = PD + DLT + CTF (DESIGN.md section 4). Deliberately no temperature field: DLT and CTF need none."""

    pd: PDConfig = PDConfig()
    dlt: DLTConfig = DLTConfig()
    ctf: CTFConfig = CTFConfig()
    cls_weight: float = Field(1.0, ge=0)
    box_weight: float = Field(1.0, ge=0)
    # CTF `dense`: its relation term (its binary term takes cls_weight). 0 (not computed) by measurement: with the
    # ResNet-18 teacher the term costs -0.23 [-0.32, -0.13] AP, with the main teacher it adds -0.01 [-0.13, +0.11].
    rel_weight: float = Field(0.0, ge=0)
    giou_weight: float = Field(4.0, ge=0)  # PD `box`: BCKD's weight for the same normaliser


@torch.no_grad()
def teacher_quality(ctx: StepContext) -> torch.Tensor:
    """(B, N) in [0, 1]: IoU of the teacher's decoded box with the matched ground truth at positives,
    the teacher's class-IoU score (max sigmoid) elsewhere. On an unlabeled image the score is used everywhere: its
    positives' boxes are the teacher's own, and an IoU with them would call every teacher box perfect."""
    quality = ctx.t_conf.clone()
    pos = ctx.targets.pos & ctx.targets.labeled[:, None]
    if pos.any():
        t_box = decode_boxes(ctx.t_edges, ctx.priors)
        quality[pos] = aligned_iou(t_box[pos], ctx.targets.boxes[pos])
    return quality


class FTPD(Method):
    Config = FTPDConfig

    def __init__(self, cfg: FTPDConfig, student, teacher) -> None:
        super().__init__(cfg, student, teacher)
        position = cfg.pd.position
        self.cross = None
        if cfg.pd.enabled and position != "output":
            self.cross = CrossHead(student, teacher, int(position), align="none", pre_activation=False)
        self.parallel = None
        if cfg.pd.enabled and cfg.pd.cross_layer is not None:
            if position != "output":
                raise ValueError("pd.cross_layer adds a branch next to the outputs: it needs pd.position 'output'")
            self.parallel = CrossHead(student, teacher, cfg.pd.cross_layer, align="stats", pre_activation=True)
        if cfg.ctf.enabled and cfg.ctf.mode != "binary" and student.num_classes < 2:
            raise ValueError(f"CTF mode {cfg.ctf.mode!r} compares classes and needs at least 2; use 'binary'")

    @staticmethod
    def weights(cfg: FTPDConfig) -> dict[str, float]:
        w = {"cls": cfg.cls_weight, "box": cfg.box_weight, "rel": cfg.rel_weight, "giou": cfg.giou_weight}
        assign = {"distill_ftpd_ta_qfl": 1.0, "distill_ftpd_ta_dfl": 0.25, "distill_ftpd_ta_giou": 2.0}  # GFL's weights
        return {f"distill_ftpd_{p}{k}": v for p in ("", "x_") for k, v in w.items()} | assign  # x_: pd.cross_layer

    def location_weights(self, ctx: StepContext) -> torch.Tensor:
        """(B, N): teacher confidence everywhere (PD), or the ATSS positives (classic region)."""
        if self.cfg.pd.enabled:
            return ctx.t_conf
        return ctx.targets.pos.float()

    def forward(self, ctx: StepContext) -> dict:
        s_cls, s_edges = self.cross(ctx) if self.cross is not None else (ctx.s_cls, ctx.s_edges)
        w = self.location_weights(ctx)  # (B, N)
        q = teacher_quality(ctx) if self.cfg.dlt.enabled and self.cfg.dlt.mode in ("quality", "sharpness") else None
        terms = {f"distill_ftpd_{k}": v for k, v in self.responses(ctx, s_cls, s_edges, w, q).items()}
        if self.parallel is not None:
            x_cls, x_edges = self.parallel(ctx)  # (B, N, C), (B, N, 4 * (n + 1))
            terms |= {f"distill_ftpd_x_{k}": v for k, v in self.responses(ctx, x_cls, x_edges, w, q).items()}
        if self.cfg.pd.enabled and self.cfg.pd.assign:
            terms |= {f"distill_ftpd_ta_{k}": v for k, v in teacher_assigned_terms(ctx).items()}
        return terms

    def responses(self, ctx: StepContext, s_cls: torch.Tensor, s_edges: torch.Tensor, w: torch.Tensor,
                  q: torch.Tensor | None) -> dict:
        """FTPD's raw terms for one place's responses: s_cls (B, N, C), s_edges (B, N, 4 * (n + 1)), location weights
        w (B, N), the teacher's localisation quality q (B, N) where DLT weighs by it."""
        cfg = self.cfg
        num_pos = ctx.targets.pos.sum().float()
        terms = {}

        if cfg.ctf.enabled and cfg.ctf.mode == "dense":
            binary, relation = dense_ctf(s_cls, ctx.t_cls, w, num_pos, relation=cfg.rel_weight > 0)
            terms["cls"] = binary
            if relation is not None:
                terms["rel"] = relation
        elif cfg.ctf.enabled:
            terms["cls"] = ctf_loss(s_cls, ctx.t_cls, cfg.ctf.mode, w)
        else:
            per_loc = binary_kd(s_cls, ctx.t_cls.sigmoid()).sum(-1)
            terms["cls"] = normalised((per_loc * w).sum(), w.sum())

        n1 = ctx.reg_max + 1
        s_e = split_edges(s_edges).reshape(-1, n1)  # (B * N * 4, n + 1)
        t_e = split_edges(ctx.t_edges).reshape(-1, n1)
        box_w = w
        if cfg.dlt.enabled:
            quality = None
            if q is not None:
                box_w = w * q  # an unreliable teacher box is transferred with less weight
                quality = q[..., None].expand(*q.shape, 4).reshape(-1)
            kl = dlt_kl(s_e, t_e, cfg.dlt.mode, quality)
        else:
            kl = edge_kl(s_e, t_e)
        per_loc_box = kl.reshape(*w.shape, 4).mean(-1)  # (B, N)
        terms["box"] = normalised((per_loc_box * box_w).sum(), box_w.sum())

        if cfg.pd.enabled and cfg.pd.box:
            disagree = (ctx.t_cls.sigmoid() - s_cls.detach().sigmoid()).abs().amax(-1)  # (B, N)
            s_box, t_box = decode_boxes(s_edges, ctx.priors), decode_boxes(ctx.t_edges, ctx.priors)
            giou = giou_loss(s_box.reshape(-1, 4), t_box.reshape(-1, 4)).reshape(w.shape)
            terms["giou"] = normalised((giou * disagree).sum(), num_pos)
        return terms
