"""`ftpdet bench profile`: where a training step's time goes, phase by phase.

The step (ftpdet.engine.step) runs each phase inside a `torch.profiler.record_function` range: teacher forward,
student forward, assignment + GFL losses, each method's distillation terms, backward, optimizer, weight average.
This runs the loop's own `TrainStep` under torch's profiler and reads those ranges back; the data phase (dataset
item + augmentation + collate, which the loop does in the main process) is timed on its own. The profiler adds
its own cost to every operator, so the step is also timed without it, and the table shows both.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from ftpdet.bench.presets import Preset
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.engine.onnx_teacher import teacher_runtime
from ftpdet.engine.run_precision import resolve_precisions
from ftpdet.engine.step import Trainee, TrainStep, build_optimizer, weight_average, weight_table
from ftpdet.methods import build_methods
from ftpdet.models.criterion import GFLLoss
from ftpdet.models.detector import build_detector
from ftpdet.provenance import git_commit, machine_description

PHASES = ("data", "teacher forward", "student forward", "assignment + GFL losses", "distillation terms", "backward",
          "optimizer", "weight average")


def _phase(event_name: str) -> str | None:
    if event_name.startswith("distillation terms"):
        return "distillation terms"
    return event_name if event_name in PHASES else None


def profile_steps(
    preset: Preset, out: str | Path, method: str = "ftpd", iters: int = 10, rounds: int = 3,
    student_overrides: tuple[str, ...] = (), teacher_overrides: tuple[str, ...] = (), command: str | None = None,
    teacher_config: str | None = None,
) -> Path:
    """Per-phase milliseconds of a plain student step and of a `method` distillation step on the preset's models
    (or `teacher_config`, e.g. the heterogeneous teacher) and input size (random weights: a step's cost does not
    depend on weight values). Writes profile.json."""
    from ftpdet.data.synth import synthesize_once

    out = Path(out)
    data = out / "data"
    synthesize_once(data, seed=0, num_train=128, num_val=8, image_size=preset.image_size)
    common = [f"data.root={data}", f"data.image_size={preset.image_size}", *preset.common]
    cfg_s = load_config(preset.student, [*common, *preset.student_overrides, *student_overrides])
    teacher_overrides = (*(preset.teacher_overrides if teacher_config is None else ()), *teacher_overrides)
    teacher_config = teacher_config or preset.teacher
    cfg_t = load_config(teacher_config, [*common, *teacher_overrides])
    bs = cfg_s.train.batch_size
    ds = CocoDetection(data / "annotations" / "instances_train.json", data / "train", preset.image_size, train=True,
                       hflip=cfg_s.data.hflip, photometric=cfg_s.data.photometric, cache_images=cfg_s.data.cache_images)
    if len(ds) < bs:
        raise ValueError(f"batch size {bs} exceeds the {len(ds)} profiling images")

    torch.manual_seed(0)
    order = torch.randperm(len(ds)).tolist()
    data_ms = []
    batches = []
    for k in range(len(ds) // bs):
        t = time.perf_counter()
        batches.append(collate([ds[i] for i in order[k * bs:(k + 1) * bs]]))
        data_ms.append(1000 * (time.perf_counter() - t))

    student = build_detector(cfg_s.model, ds.num_classes)
    teacher = build_detector(cfg_t.model, ds.num_classes)
    # The teacher at its config's train.amp / channels_last (auto unless --teacher-set says otherwise), resolved here
    # as a distillation resolves distill.teacher_amp / teacher_channels_last.
    teacher_settings = {"teacher_amp": cfg_t.train.amp, "teacher_channels_last": cfg_t.train.channels_last}
    cfg_s = cfg_s.model_copy(update={"distill": cfg_s.distill.model_copy(update=teacher_settings)})
    prec = resolve_precisions(cfg_s, student, ds.num_classes, teacher, cfg_t, torch.device("cpu"), bs)
    print(prec.line)
    s_prec, t_prec = prec.student.precision, prec.teacher.precision
    criterion = GFLLoss(cfg_s.loss, ds.num_classes, cfg_s.model.reg_max, cfg_s.model.atss_topk, cfg_s.model.atss_fallback)
    tc = cfg_s.train

    def make_step(trainee: Trainee, weights: dict[str, float]) -> TrainStep:
        ema = weight_average(trainee.student, tc.ema, tc.warmup_steps) if tc.ema is not None else None
        return TrainStep(trainee.train(), build_optimizer(trainee, tc), weights, tc.grad_clip, ema=ema)

    teacher_forward = teacher_runtime(cfg_s.distill.teacher_runtime, teacher, preset.image_size, out / "teacher.onnx",
                                      torch.device("cpu"))
    steps = {
        "student step": make_step(Trainee(student, criterion, precision=s_prec), weight_table(cfg_s.loss)),
        f"{method} step": make_step(
            Trainee(student, criterion, teacher, build_methods(method, cfg_s.distill, student, teacher), s_prec, t_prec,
                    teacher_forward),
            weight_table(cfg_s.loss, cfg_s.distill, method)),
    }
    cursor = iter(range(10**9))

    def run(step: TrainStep, n: int) -> None:
        for _ in range(n):
            step(*batches[next(cursor) % len(batches)])

    result_steps: dict[str, Any] = {}
    for name, step in steps.items():
        run(step, 2)  # warm-up: allocator, oneDNN kernels
        wall = []
        for _ in range(rounds):
            t = time.perf_counter()
            run(step, iters)
            wall.append(1000 * (time.perf_counter() - t) / iters)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run(step, iters)
        phases = {p: 0.0 for p in PHASES}
        for ev in prof.key_averages():
            phase = _phase(ev.key)
            if phase is not None:
                phases[phase] += ev.cpu_time_total / 1000 / iters
        phases["data"] = statistics.median(data_ms)
        profiled_total = sum(v for k, v in phases.items() if k != "data")
        result_steps[name] = {"phases_ms": {k: round(v, 2) for k, v in phases.items()},
                              "step_ms_unprofiled": round(statistics.median(wall), 2),
                              "phases_total_ms": round(profiled_total, 2)}
        print(f"{name}: {statistics.median(wall):.1f} ms per step without the profiler", flush=True)

    result = {
        "command": command or f"ftpdet bench profile --preset {preset.name} --method {method}",
        "date": date.today().isoformat(), "commit": git_commit(), "machine": machine_description(),
        "preset": preset.name, "batch_size": bs, "image_size": preset.image_size, "iters": iters, "rounds": rounds,
        "student": f"{preset.student} ({cfg_s.model.backbone})", "teacher": f"{teacher_config} ({cfg_t.model.backbone})",
        "precision": {"student": vars(s_prec), "teacher": vars(t_prec)},
        "teacher_runtime": cfg_s.distill.teacher_runtime, "steps": result_steps,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "profile.json"
    path.write_text(json.dumps(result, indent=1))
    print("\n".join(profile_table(result)))
    return path


def profile_table(result: dict[str, Any]) -> list[str]:
    """Markdown: one row per phase, one column per step kind, then the totals."""
    names = list(result["steps"])
    lines = ["| phase (ms per step) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for phase in PHASES:
        values = [result["steps"][n]["phases_ms"][phase] for n in names]
        if any(values):
            lines.append(f"| {phase} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    lines.append("| sum of the step's phases, under the profiler | "
                 + " | ".join(f"{result['steps'][n]['phases_total_ms']:.1f}" for n in names) + " |")
    lines.append("| step without the profiler (data excluded) | "
                 + " | ".join(f"{result['steps'][n]['step_ms_unprofiled']:.1f}" for n in names) + " |")
    return lines
