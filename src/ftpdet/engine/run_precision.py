"""The precision of one run's student and teacher, resolved on the machine that runs it (models/precision.py does
the timing): said once at start, written into the run's config.yaml (`train.amp`, `train.channels_last`,
`distill.teacher_amp`, `distill.teacher_channels_last` hold the resolved values) and into every checkpoint
(`precision`: both models and the machine's identity).

The teacher's precision comes from `distill.teacher_*` (auto by default), never from the teacher's checkpoint: a
teacher trained under bf16 on a CPU with native bf16 runs in float32 on one without. A resumed run takes back what
its checkpoint ran at when it resumes on the machine it was started on (the same kernels: an exact resume), and
is resolved anew on any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ftpdet.config import Config
from ftpdet.hardware import Capability, capability
from ftpdet.models.detector import GFLDetector
from ftpdet.models.precision import Precision, Resolved, emulation_warning, model_key, resolve, summary_line


@dataclass
class RunPrecision:
    config: Config  # the run's config with the resolved values in place of auto
    student: Resolved
    teacher: Resolved | None
    machine: str
    line: str  # the one line said at start
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """What a checkpoint keeps: each model's precision and the machine it was resolved on."""
        return {"machine": self.machine, "student": asdict(self.student.precision),
                "teacher": asdict(self.teacher.precision) if self.teacher else None,
                "how": {"student": self.student.how, "teacher": self.teacher.how if self.teacher else None}}


def _stored(ckpt: dict | None, cap: Capability, role: str) -> Precision | None:
    """The precision `role` ran at in a checkpoint written on this very machine (None elsewhere)."""
    rec = (ckpt or {}).get("precision")
    if not isinstance(rec, dict) or rec.get("machine") != cap.describe() or not isinstance(rec.get(role), dict):
        return None
    try:
        return Precision(**rec[role])
    except TypeError:
        return None


def _one(model: torch.nn.Module, key: dict, cap: Capability, amp: str, channels_last: bool | str, stored, *,
         batch: int, image_size: int, device: torch.device, train: bool) -> Resolved:
    if stored is not None and "auto" in (amp, channels_last):
        amp = stored.amp if amp == "auto" else amp
        channels_last = stored.channels_last if channels_last == "auto" else channels_last
        resolved = resolve(model, key, cap, amp, channels_last, batch=batch, image_size=image_size, device=device,
                           train=train)
        return Resolved(resolved.precision, "resumed")
    return resolve(model, key, cap, amp, channels_last, batch=batch, image_size=image_size, device=device, train=train)


def resolve_precisions(cfg: Config, student: GFLDetector, num_classes: int, teacher: GFLDetector | None,
                       teacher_cfg: Config | None, device: torch.device, batch: int,
                       ckpt: dict | None = None) -> RunPrecision:
    """Student (forward + backward of a `batch` of training images) and teacher (no-grad forward) precisions on
    `device`."""
    cap = capability(str(device))
    tc, dc, size = cfg.train, cfg.distill, cfg.data.image_size
    warnings = [w for w in (emulation_warning(cap, tc.amp, "train.amp"),) if w]
    s = _one(student, model_key(cfg.model, num_classes), cap, tc.amp, tc.channels_last, _stored(ckpt, cap, "student"),
             batch=batch, image_size=size, device=device, train=True)
    t, note = None, ""
    update = {"train": tc.model_copy(update={"amp": s.precision.amp, "channels_last": s.precision.channels_last})}
    if teacher is not None:
        if dc.teacher_runtime == "onnxruntime":  # ONNX Runtime runs the exported float32 graph
            t, note = Resolved(Precision(), "rule"), "float32 (ONNX Runtime)"
        else:
            warnings += [w for w in (emulation_warning(cap, dc.teacher_amp, "distill.teacher_amp"),) if w]
            t = _one(teacher, model_key(teacher_cfg.model, num_classes), cap, dc.teacher_amp, dc.teacher_channels_last,
                     _stored(ckpt, cap, "teacher"), batch=batch, image_size=size, device=device, train=False)
        update["distill"] = dc.model_copy(update={"teacher_amp": t.precision.amp,
                                                  "teacher_channels_last": t.precision.channels_last})
    return RunPrecision(cfg.model_copy(update=update), s, t, cap.describe(), summary_line(s, t, cap, note), warnings)
