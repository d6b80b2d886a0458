"""The distillation interface: a frozen teacher, a student, one method, one training step.

`Distiller.forward(images, targets)` runs the teacher (eval mode, no gradient) and the student on the same
augmented batch and returns the student's GFL terms plus the method's named, weighted terms. A method is
an `nn.Module` (it may own trainable adapters, used only in training) whose `forward(ctx)` returns
`{name: weighted loss}`. Shared per-step tensors live in `StepContext`, flattened once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from ftpdet.data.coco import Categories
from ftpdet.engine.checkpoint import load_model
from ftpdet.errors import CheckpointError
from ftpdet.models.criterion import GFLLoss, Targets
from ftpdet.models.detector import GFLDetector, Priors, flatten_levels


def load_teacher(path: str | Path, student: GFLDetector, categories: Categories) -> GFLDetector:
    """A frozen teacher from a checkpoint (weights_only). Refused with the reason when it cannot teach
    this student: other classes, another reg_max or other FPN strides. Other backbones and widths are fine."""
    teacher, cfg, cats = load_model(path)
    if cats.ids != categories.ids or cats.names != categories.names:
        raise CheckpointError(
            f"{path}: teacher classes {cats.names} (ids {cats.ids}) differ from the student's dataset "
            f"{categories.names} (ids {categories.ids})"
        )
    if cfg.model.reg_max != student.cfg.reg_max:
        raise CheckpointError(f"{path}: teacher reg_max {cfg.model.reg_max} differs from the student's {student.cfg.reg_max}")
    if list(cfg.model.strides) != list(student.cfg.strides):
        raise CheckpointError(f"{path}: teacher FPN strides {cfg.model.strides} differ from the student's {student.cfg.strides}")
    return freeze(teacher)


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class StepContext:
    """What every method may read in one step. Teacher tensors carry no gradient."""

    student: GFLDetector
    teacher: GFLDetector
    s_out: dict[str, list]
    t_out: dict[str, list]
    priors: Priors
    targets: Targets
    # The step's autocast (or a null context): training-only branches that run network layers (the cross
    # head) use it too, so they cost what the forwards cost; losses are computed in float32 outside it.
    amp: contextlib.AbstractContextManager = contextlib.nullcontext()

    @cached_property
    def s_cls(self) -> torch.Tensor:  # (B, N, C) logits
        return flatten_levels(self.s_out["cls_logits"]).float()

    @cached_property
    def t_cls(self) -> torch.Tensor:  # (B, N, C) logits
        return flatten_levels(self.t_out["cls_logits"]).float()

    @cached_property
    def s_edges(self) -> torch.Tensor:  # (B, N, 4 * (reg_max + 1)) logits
        return flatten_levels(self.s_out["edge_logits"]).float()

    @cached_property
    def t_edges(self) -> torch.Tensor:  # (B, N, 4 * (reg_max + 1)) logits
        return flatten_levels(self.t_out["edge_logits"]).float()

    @cached_property
    def t_conf(self) -> torch.Tensor:  # (B, N) teacher's max class score: "how sure is the teacher here"
        return self.t_cls.sigmoid().amax(-1)

    @property
    def reg_max(self) -> int:
        return self.student.cfg.reg_max


def zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """A zero that keeps every input in the graph: DDP needs a gradient for every parameter."""
    return sum(t.sum() * 0 for t in tensors)


def channel_adapter(cin: int, cout: int) -> nn.Module:
    """1x1 conv from student to teacher width (trained, dropped at inference); identity when equal."""
    return nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)


class CrossHead(nn.Module):
    """Student tower features after layer k -> the frozen teacher head's layers k.. and predictors.

    Shared by CrossKD and PD at a tower position. `align="stats"` re-scales each student channel to the
    teacher's per-channel mean / std at that layer (CrossKD); `align="none"` relies on the adapter alone.
    """

    def __init__(self, student: GFLDetector, teacher: GFLDetector, layer: int, align: str, pre_activation: bool) -> None:
        super().__init__()
        if not 0 <= layer <= min(student.head.num_convs, teacher.head.num_convs):
            raise ValueError(
                f"tower layer {layer} is outside 0..{min(student.head.num_convs, teacher.head.num_convs)} "
                f"(student has {student.head.num_convs} convs per tower, teacher {teacher.head.num_convs})"
            )
        s_ch = student.cfg.fpn_channels if layer == 0 else student.cfg.head_channels
        t_ch = teacher.cfg.fpn_channels if layer == 0 else teacher.cfg.head_channels
        self.layer, self.align, self.pre_activation = layer, align, pre_activation and layer > 0
        self.cls_adapter = channel_adapter(s_ch, t_ch)
        self.reg_adapter = channel_adapter(s_ch, t_ch)

    @staticmethod
    def _tap(convs: nn.ModuleList, tower: list[torch.Tensor], layer: int, pre_activation: bool) -> torch.Tensor:
        """Features after layer k (in the towers' dtype: bf16 under autocast)."""
        if not pre_activation:
            return tower[layer]
        return convs[layer - 1][:2](tower[layer - 1])  # conv + GN of layer k, before its ReLU

    @staticmethod
    def _match_stats(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per channel over (B, H, W): z-score x, then give it ref's mean and std (statistics in float32)."""
        dims = (0, 2, 3)
        x, ref = x.float(), ref.float()
        x = (x - x.mean(dims, keepdim=True)) / (x.std(dims, keepdim=True) + 1e-6)
        return x * ref.std(dims, keepdim=True) + ref.mean(dims, keepdim=True)

    def forward(self, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-head class logits (B, N, C) and edge logits (B, N, 4 * (reg_max + 1)), levels flattened, float32.
        The layers run under the step's autocast, as the student's and teacher's own heads do."""
        with ctx.amp:
            cls_out, edge_out = self._run(ctx)
        return flatten_levels(cls_out).float(), flatten_levels(edge_out).float()

    def _run(self, ctx: StepContext) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        s_head, t_head = ctx.student.head, ctx.teacher.head
        cls_out, edge_out = [], []
        for level in range(len(ctx.s_out["cls_logits"])):
            feats = []
            for kind, s_convs, t_convs, adapter in (
                ("cls_tower", s_head.cls_convs, t_head.cls_convs, self.cls_adapter),
                ("reg_tower", s_head.reg_convs, t_head.reg_convs, self.reg_adapter),
            ):
                x = adapter(self._tap(s_convs, ctx.s_out[kind][level], self.layer, self.pre_activation))
                if self.align == "stats":
                    with torch.no_grad():
                        ref = self._tap(t_convs, ctx.t_out[kind][level], self.layer, self.pre_activation)
                    x = self._match_stats(x, ref)
                if self.pre_activation:
                    x = torch.relu(x)
                feats.append(x)
            cls, edges = t_head.forward_from(level, self.layer, feats[0], feats[1])
            cls_out.append(cls)
            edge_out.append(edges)
        return cls_out, edge_out


class Distiller(nn.Module):
    """Student + frozen teacher + method(s). Only `student` and the methods' adapters train."""

    def __init__(self, student: GFLDetector, teacher: GFLDetector, methods: nn.ModuleDict, criterion: GFLLoss) -> None:
        super().__init__()
        self.student = student
        self.methods = methods
        self.criterion = criterion
        object.__setattr__(self, "teacher", freeze(teacher))  # not a submodule: never in state_dict or optimizer

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        self.teacher.eval()  # the teacher stays in eval mode: frozen BatchNorm statistics
        return self

    def forward(
        self, images: torch.Tensor, targets: list[dict], amp: contextlib.AbstractContextManager | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Returns (GFL terms unweighted, distillation terms already weighted). `amp` wraps both forwards;
        the losses are computed in float32 outside it."""
        with amp or contextlib.nullcontext():
            with torch.no_grad():
                t_out = self.teacher(images)
            s_out = self.student(images)
        priors = self.student.priors(s_out)
        gfl_terms, tg = self.criterion(s_out, priors, targets)
        ctx = StepContext(self.student, self.teacher, s_out, t_out, priors, tg, amp or contextlib.nullcontext())
        distill_terms: dict[str, torch.Tensor] = {}
        for method in self.methods.values():
            distill_terms.update(method(ctx))
        return gfl_terms, distill_terms
