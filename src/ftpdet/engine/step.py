"""One training step, the same for the training loop (engine/train.py) and `ftpdet bench speed`:

    forward (teacher without gradient, student) -> GFL terms -> distillation terms   (Trainee: raw terms)
    -> the weight table, applied once -> sum -> finite check -> backward -> clip -> update   (TrainStep)

Every loss function returns raw, unweighted named terms; `weight_table` gathers GFL's weights (`loss.*`) and each
method's (`distill.<method>.*`) in one dict, and `weigh` applies it in one place, so logs show both. Each phase
runs inside a `torch.profiler.record_function` range (nearly free when no profiler listens), so
`ftpdet bench profile` breaks a step down by phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.profiler import record_function

import ftpdet.distributed as dist
from ftpdet.config import DistillBase
from ftpdet.methods import method_weights
from ftpdet.methods.base import StepContext
from ftpdet.models.criterion import GFLLoss
from ftpdet.models.detector import GFLDetector, freeze
from ftpdet.models.precision import Precision
from ftpdet.models.pseudo_labels import teacher_boxes
from ftpdet.sections import EvalConfig, LossConfig, TrainConfig


UNLABELED_SCORE_THR = DistillBase.model_fields["unlabeled_score_thr"].default  # the config's, for a Trainee built by hand


def weight_table(loss: LossConfig, distill=None, method: str | None = None) -> dict[str, float]:
    """{term name: weight} for GFL's terms and, with `method`, for every term its methods may return
    (`distill` is the config's distill section)."""
    table = {"loss_qfl": loss.qfl, "loss_dfl": loss.dfl, "loss_giou": loss.giou}
    if method is not None:
        table |= method_weights(method, distill)
    return table


def weigh(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> dict[str, torch.Tensor]:
    """Each raw term times its weight: the one place weights are applied."""
    missing = [k for k in terms if k not in weights]
    if missing:
        raise KeyError(f"loss terms without a weight in the weight table: {missing}")
    return {k: weights[k] * v for k, v in terms.items()}


class Trainee(nn.Module):
    """The student, with an optional frozen teacher and distillation methods: forward(images, targets) returns
    every loss term of the step, raw and by name (GFL's `loss_*`, then each method's `distill_*`).

    Only the student and the methods' adapters are submodules (parameters, state_dict, DDP); the teacher is held
    outside them, in eval mode and without gradient. Each model runs at its own `Precision` (autocast, memory
    format: the student's from its config, the teacher's from its checkpoint's); the losses are computed in
    float32 outside any autocast.
    """

    def __init__(self, student: GFLDetector, criterion: GFLLoss, teacher: GFLDetector | None = None,
                 methods: nn.ModuleDict | None = None, precision: Precision = Precision(),
                 teacher_precision: Precision = Precision(),
                 teacher_forward: Callable[[torch.Tensor], dict[str, list]] | None = None,
                 unlabeled_score_thr: float = UNLABELED_SCORE_THR, eval_cfg: EvalConfig = EvalConfig()) -> None:
        super().__init__()
        # Unlabeled images (a target with `labeled` False) get the teacher's detections above this score as boxes
        # (models/pseudo_labels.py), with inference's NMS settings `eval_cfg`.
        self.unlabeled_score_thr, self.eval_cfg = unlabeled_score_thr, eval_cfg
        self.stats: dict[str, float] = {}  # the last step's numbers that are not losses (logged beside them)
        self.student = precision.prepare(student)
        self.methods = methods if methods is not None else nn.ModuleDict()
        self.criterion = criterion
        self.precision, self.teacher_precision = precision, teacher_precision
        if teacher is not None:
            teacher = teacher_precision.prepare(freeze(teacher))
        object.__setattr__(self, "teacher", teacher)
        self.teacher_forward = teacher_forward  # another runtime for the teacher's forward (engine/onnx_teacher.py)

    def with_teacher_boxes(self, targets: list[dict], t_out: dict[str, list], unlabeled: list[int],
                           image_hw: tuple[int, int]) -> list[dict]:
        """`targets` with the teacher's detections as the boxes and labels of the unlabeled images."""
        found = teacher_boxes(self.teacher, t_out, unlabeled, image_hw, self.unlabeled_score_thr, self.eval_cfg)
        targets = list(targets)
        for i, det in zip(unlabeled, found):
            targets[i] = {**targets[i], "boxes": det["boxes"], "labels": det["labels"]}
        self.stats = {"teacher_boxes_per_unlabeled": sum(len(d["boxes"]) for d in found) / len(unlabeled)}
        return targets

    def train(self, mode: bool = True) -> Trainee:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher stays in eval mode: frozen BatchNorm statistics
        return self

    def forward(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        device = images.device.type
        if self.teacher is not None:
            with record_function("teacher forward"), torch.no_grad():
                if self.teacher_forward is not None:
                    t_out = self.teacher_forward(images)
                else:
                    with self.teacher_precision.autocast(device):
                        t_out = self.teacher(self.teacher_precision.input(images))
            unlabeled = [i for i, t in enumerate(targets) if not t.get("labeled", True)]
            if unlabeled:
                with record_function("teacher boxes on unlabeled images"):
                    targets = self.with_teacher_boxes(targets, t_out, unlabeled, tuple(images.shape[-2:]))
        amp = self.precision.autocast(device)
        with record_function("student forward"), amp:
            s_out = self.student(self.precision.input(images))
        with record_function("assignment + GFL losses"):
            priors = self.student.priors(s_out)
            terms, tg = self.criterion(s_out, priors, targets)
        if self.teacher is not None:
            # Training-only branches that run network layers (the cross head) re-enter the student's autocast.
            ctx = StepContext(self.student, self.teacher, s_out, t_out, priors, tg, amp)
            for name, method in self.methods.items():
                with record_function(f"distillation terms ({name})"):
                    terms |= method(ctx)
        return terms


def weight_average(model: nn.Module, decay: float, ramp_steps: int) -> AveragedModel:
    """torch's AveragedModel as an exponential moving average of `model`'s weights and floating-point buffers
    (BatchNorm statistics; integer buffers are copied). The decay ramps up as decay * (1 - exp(-n / ramp_steps)),
    as in YOLOX and ultralytics, so the early, fast-changing weights are not averaged in for long."""

    def average(avg: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        if not avg.is_floating_point():
            return current
        d = decay * (1 - math.exp(-float(n) / max(1, ramp_steps)))
        return avg.lerp(current, 1 - d)

    return AveragedModel(model, avg_fn=average, use_buffers=True)


class NonFiniteLoss(Exception):
    """The weighted loss is NaN or infinite on some rank; nothing was updated. `terms`: the weighted terms."""

    def __init__(self, terms: dict[str, float]) -> None:
        super().__init__(", ".join(f"{k}={v:.4g}" for k, v in terms.items()))
        self.terms = terms


@dataclass
class StepOutput:
    raw: dict[str, torch.Tensor]
    weighted: dict[str, torch.Tensor]
    loss: torch.Tensor


class TrainStep:
    """trainee forward -> weigh -> sum -> finite check (all ranks agree) -> zero_grad -> backward -> clip -> step
    -> learning-rate schedule and weight average, when given. With `scaler` (train.amp fp16), the loss is scaled
    before backward and the gradients unscaled before clipping (torch.amp.GradScaler).

    `forward` is what runs the trainee: the trainee itself, or its DistributedDataParallel wrapper."""

    def __init__(self, trainee: Trainee, optimizer: torch.optim.Optimizer, weights: dict[str, float],
                 grad_clip: float | None = None, scheduler=None, forward: nn.Module | None = None,
                 ema: AveragedModel | None = None, scaler: torch.amp.GradScaler | None = None) -> None:
        self.trainee, self.optimizer, self.weights = trainee, optimizer, weights
        self.grad_clip, self.scheduler, self.ema, self.scaler = grad_clip, scheduler, ema, scaler
        self.forward = forward if forward is not None else trainee

    def __call__(self, images: torch.Tensor, targets: list[dict]) -> StepOutput:
        raw = self.forward(images, targets)
        weighted = weigh(raw, self.weights)
        loss = sum(weighted.values())
        if dist.any_rank(not torch.isfinite(loss).item()):  # every rank stops together, or collectives hang
            raise NonFiniteLoss({k: v.item() for k, v in weighted.items()})
        self.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        with record_function("optimizer"):
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients; skipped steps keep inf/nan out
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.trainee.parameters(), self.grad_clip)
            if self.scaler is None:
                self.optimizer.step()
            else:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            if self.scheduler is not None:
                self.scheduler.step()
        if self.ema is not None:
            with record_function("weight average"):
                self.ema.update_parameters(self.trainee.student)
        return StepOutput(raw, weighted, loss)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on norms, biases and the per-level scales: decaying them only fights the data."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused implementations update every tensor in one kernel: the student's AdamW step took 5.8 ms with
    # the per-tensor loop and 1.0 ms fused on the development CPU (161 tensors, 0.4 M parameters).
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, fused=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
