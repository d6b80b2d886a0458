"""The distillation interface: what every method reads in one step, and what it returns.

A method is a `Method` (an `nn.Module`; it may own trainable adapters, used only in training) with
- `Config`: its pydantic config section, beside it in its file (`distill.<name>` in a config);
- `weights(cfg)`: `{term name: weight}` for every term it can return, read from that section;
- `forward(ctx)`: `{term name: raw, unweighted loss}` from the step's `StepContext`.
The step (ftpdet.engine.step) applies the weights, once, to these and to GFL's own terms. Shared per-step
tensors live in `StepContext`, flattened once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch
from torch import nn

from ftpdet.methods.functional import zscore
from ftpdet.models.criterion import Targets
from ftpdet.models.detector import GFLDetector, Priors, flatten_levels
from ftpdet.sections import Section


class Method(nn.Module):
    """One distillation method. Subclasses set `Config` and implement `weights` and `forward`."""

    Config: ClassVar[type[Section]]

    def __init__(self, cfg: Section, student: GFLDetector, teacher: GFLDetector) -> None:
        super().__init__()
        self.cfg = cfg

    @staticmethod
    def weights(cfg) -> dict[str, float]:
        """{term name: weight} for every term `forward` may return."""
        raise NotImplementedError

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        """{term name: raw loss}: unweighted, normalised as the method's authors normalise it."""
        raise NotImplementedError


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
        """Features after layer k (in the towers' dtype: bf16 under autocast). Before the ReLU, layer k's conv + GN
        runs again on the tower's input, cast to that conv's weight dtype: a teacher's tower comes from its own
        precision (bf16) and meets float32 weights when the student's step runs in float32 (an exact round trip
        when the step's autocast casts it back to bf16)."""
        if not pre_activation:
            return tower[layer]
        block = convs[layer - 1]
        return block[:2](tower[layer - 1].to(block[0].weight.dtype))  # conv + GN of layer k, before its ReLU

    @staticmethod
    def _match_stats(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per channel over (B, H, W): z-score x, then give it ref's mean and std (statistics in float32)."""
        dims = (0, 2, 3)
        ref = ref.float()
        return zscore(x.float(), dims) * ref.std(dims, keepdim=True) + ref.mean(dims, keepdim=True)

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
