"""`ftpdet bench speed`: what each distillation method costs per training step, and inference throughput.

Everything is timed in one process on the same pre-collated batches (data loading excluded), in interleaved
rounds: each round times every step kind for `iters` iterations, and each kind's median round counts. On
a shared machine, load changes slowly compared with one round, so the ratios, not the absolute times, are
what to read; each is also given paired by round (the kind over its floor in the same round) with a 95% interval
over rounds, and a cost is within a budget when that interval lies below it. Floor = a plain student training step
+ a teacher no-grad forward: the least any method that needs the teacher's outputs can cost.

With `unlabeled_methods`, the same on steps that add as many unlabeled images as labeled ones (data.unlabeled_ratio 1):
their floor is the plain student step on the whole mixed batch (its task loss on the labeled half) + the teacher's
forward on it; each method's step also pays for the teacher's detections on the unlabeled images (decode + NMS).
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

import torch

from ftpdet.bench.presets import MAIN_METHODS, Preset
from ftpdet.bench.stats import FLOOR_PARTS, WITH_UNLABELED, round_ratios
from ftpdet.checkpoint import load_model
from ftpdet.config import Config, apply_overrides, config_from_dict, load_config
from ftpdet.data.coco import CocoDetection, collate, join_batches
from ftpdet.engine.run_precision import resolve_precisions
from ftpdet.engine.step import Trainee, TrainStep, build_optimizer, weight_average, weight_table
from ftpdet.methods import build_methods
from ftpdet.models.criterion import GFLLoss
from ftpdet.models.detector import build_detector, freeze
from ftpdet.onnx_export import export_model
from ftpdet.provenance import git_commit, machine_description
from ftpdet.runtime import OnnxPredictor


# What the place of PD costs: FTPD at its default position is in the methods; the other positions are timed too.
FTPD_POSITIONS = (("output", "the student's outputs"), ("0", "tower layer 0"), ("1", "tower layer 1"))


def _time(fn: Callable[[], Any], iters: int) -> float:
    """Milliseconds per call over `iters` calls."""
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return 1000 * (time.perf_counter() - t) / iters


def _model(cfg: Config, num_classes: int, checkpoint: Path | None):
    """A trained checkpoint when given (realistic detection counts for inference; its own config), else a
    random initialisation of cfg's model (enough for training-step cost, which does not depend on weight values)."""
    if checkpoint is None:
        return build_detector(cfg.model, num_classes), cfg
    model, stored, _ = load_model(checkpoint)
    return model, cfg.model_copy(update={"model": stored.model})


def run_speed(
    preset: Preset,
    out: str | Path,
    iters: int = 10,
    rounds: int = 5,
    teacher: Path | None = None,
    student: Path | None = None,
    methods: tuple[str, ...] = MAIN_METHODS,
    command: str | None = None,
    unlabeled_methods: tuple[str, ...] = (),
) -> Path:
    from ftpdet.data.synth import synthesize_once, synthesize_unlabeled_once

    out = Path(out)
    data = out / "data"
    synthesize_once(data, seed=0, num_train=64, num_val=8, image_size=preset.image_size)
    if unlabeled_methods:
        synthesize_unlabeled_once(data, seed=0, num_unlabeled=64, image_size=preset.image_size)
    overrides = [f"data.root={data}", f"data.image_size={preset.image_size}", *preset.common]
    cfg_s = load_config(preset.student, [*overrides, *preset.student_overrides])
    cfg_t = load_config(preset.teacher, [*overrides, *preset.teacher_overrides])
    bs = cfg_s.train.batch_size
    ds = CocoDetection(data / "annotations" / "instances_train.json", data / "train", preset.image_size, train=True)
    batches = [collate([ds[i] for i in range(k * bs, (k + 1) * bs)]) for k in range(len(ds) // bs)]
    if not batches:
        raise ValueError(f"batch size {bs} exceeds the {len(ds)} speed-benchmark images")
    mixed = []  # each labeled batch, then as many unlabeled images (the stream's first positions)
    if unlabeled_methods:
        from ftpdet.data.transforms import Resize
        from ftpdet.data.unlabeled import UnlabeledImages, load_unlabeled

        unl = UnlabeledImages(load_unlabeled(data / "unlabeled")[0], Resize(preset.image_size), seed=0)
        mixed = [join_batches(b, collate([unl[(i, i)] for i in range(k * bs, (k + 1) * bs)]))
                 for k, b in enumerate(batches)]
    torch.manual_seed(0)
    t_model, cfg_t = _model(cfg_t, ds.num_classes, teacher)
    s_model, cfg_s = _model(cfg_s, ds.num_classes, student)
    freeze(t_model)
    criterion = GFLLoss(cfg_s.loss, ds.num_classes, cfg_s.model.reg_max, cfg_s.model.atss_topk, cfg_s.model.atss_fallback)
    cursor = {"i": 0}

    def next_batch(source: list = batches):
        cursor["i"] = (cursor["i"] + 1) % len(source)
        return source[cursor["i"]]

    def make_step(trainee: Trainee, weights: dict[str, float], source: list = batches) -> Callable[[], None]:
        """The training loop's own step (engine/step.py) on this trainee, with the weight average when the student's
        config keeps one; without a learning-rate schedule."""
        tc = cfg_s.train
        ema = weight_average(trainee.student, tc.ema, tc.warmup_steps) if tc.ema is not None else None
        step = TrainStep(trainee.train(), build_optimizer(trainee, tc), weights, tc.grad_clip, ema=ema)
        return lambda: step(*next_batch(source))

    # As a training run resolves them on this machine (the teacher's from distill.teacher_*, not its checkpoint's).
    prec = resolve_precisions(cfg_s, s_model, ds.num_classes, t_model, cfg_t, torch.device("cpu"), bs)
    print(prec.line)
    s_prec, t_prec = prec.student.precision, prec.teacher.precision
    t_prec.prepare(t_model)

    @torch.no_grad()
    def teacher_forward(source: list = batches) -> None:
        with t_prec.autocast("cpu"):
            t_model(t_prec.input(next_batch(source)[0]))

    plain = Trainee(s_model, criterion, precision=s_prec)
    kinds: dict[str, Callable[[], None]] = {"student step": make_step(plain, weight_table(cfg_s.loss)),
                                            "teacher forward": teacher_forward}
    variants = [(name, name, []) for name in methods] + [
        (f"ftpd, PD at {where}", "ftpd", [f"distill.ftpd.pd.position={pos}"]) for pos, where in FTPD_POSITIONS
        if pos != str(cfg_s.distill.ftpd.pd.position)
        and (pos == "output" or int(pos) <= min(s_model.head.num_convs, t_model.head.num_convs))
    ]
    if cfg_s.distill.ftpd.pd.cross_layer is None:  # PD at the outputs and through a branch (pd.cross_layer), CrossKD's tap
        k = build_methods("crosskd", cfg_s.distill, s_model, t_model)["crosskd"].cross.layer
        variants.append((f"ftpd, PD at the outputs and tower layer {k}", "ftpd", [f"distill.ftpd.pd.cross_layer={k}"]))
    if cfg_s.distill.ftpd.pd.assign:  # what the teacher's labels (a second assignment and GFL's terms) cost
        variants.append(("ftpd, without the teacher's labels", "ftpd", ["distill.ftpd.pd.assign=false"]))
    for label, spec, overrides in variants:
        distill_cfg = config_from_dict(apply_overrides(cfg_s.model_dump(), overrides)).distill
        methods = build_methods(spec, distill_cfg, s_model, t_model)
        trainee = Trainee(s_model, criterion, t_model, methods, s_prec, t_prec)
        kinds[label] = make_step(trainee, weight_table(cfg_s.loss, distill_cfg, spec))
    if unlabeled_methods:
        kinds[f"student step{WITH_UNLABELED}"] = make_step(plain, weight_table(cfg_s.loss), mixed)
        kinds[f"teacher forward{WITH_UNLABELED}"] = lambda: teacher_forward(mixed)
        for spec in unlabeled_methods:
            trainee = Trainee(s_model, criterion, t_model, build_methods(spec, cfg_s.distill, s_model, t_model), s_prec,
                              t_prec, unlabeled_score_thr=cfg_s.distill.unlabeled_score_thr, eval_cfg=cfg_s.eval)
            kinds[f"{spec}{WITH_UNLABELED}"] = make_step(trainee, weight_table(cfg_s.loss, cfg_s.distill, spec), mixed)
    for fn in kinds.values():  # warm-up: allocator, autocast caches, oneDNN kernels
        fn()
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(rounds):
        for name, fn in kinds.items():
            samples[name].append(_time(fn, iters))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in samples.items()), flush=True)
    ms = {k: statistics.median(v) for k, v in samples.items()}
    floors = {"": ms["student step"] + ms["teacher forward"]}
    if unlabeled_methods:
        floors[WITH_UNLABELED] = ms[f"student step{WITH_UNLABELED}"] + ms[f"teacher forward{WITH_UNLABELED}"]
    floor_kinds = {f"{k}{w}" for k in FLOOR_PARTS for w in floors}
    ratios = {k: v / floors[WITH_UNLABELED if k.endswith(WITH_UNLABELED) else ""] for k, v in ms.items()
              if k not in floor_kinds}
    paired = round_ratios(samples)

    inference = []
    images = batches[0][0]
    for role, model, cfg in (("teacher", t_model, cfg_t), ("student", s_model, cfg_s)):
        model.eval()
        onnx_path = export_model(model, cfg, ds.categories, out / f"{role}.onnx", dynamic_batch=True)
        for runtime, det in (("PyTorch (float32)", model), ("ONNX Runtime (float32)", OnnxPredictor(onnx_path))):
            det.predict(images, cfg.eval)  # warm-up
            per_batch = statistics.median(_time(lambda: det.predict(images, cfg.eval), max(2, iters // 2))
                                          for _ in range(rounds))
            inference.append({"model": f"{role} ({cfg.model.backbone})", "runtime": runtime,
                              "images_per_s": 1000 * len(images) / per_batch})

    result = {
        "command": command or f"ftpdet bench speed --preset {preset.name} --iters {iters} --rounds {rounds}",
        "date": date.today().isoformat(), "commit": git_commit(), "machine": machine_description(),
        "preset": preset.name, "batch_size": bs, "image_size": preset.image_size, "amp": s_prec.amp,
        "precision": {"student": vars(s_prec), "teacher": vars(t_prec)},
        "iters": iters, "rounds": rounds, "teacher": preset.teacher, "student": preset.student,
        "trained_weights": bool(teacher and student),
        "unlabeled_per_step": bs if unlabeled_methods else 0,
        "ms": {k: round(v, 2) for k, v in ms.items()}, "ratios": {k: round(v, 3) for k, v in ratios.items()},
        # (geometric mean, low, high) paired by round; no interval (null) from one round
        "round_ratios": {k: [None if x != x else round(x, 3) for x in v] for k, v in paired.items()},
        "samples_ms": {k: [round(x, 2) for x in v] for k, v in samples.items()}, "inference": inference,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "speed.json"
    path.write_text(json.dumps(result, indent=1))
    for k, v in ms.items():
        print(f"{k:>16}: {v:7.1f} ms" + (f"  {ratios[k]:.2f} x floor; paired by round {paired[k][0]:.2f} x "
                                         f"[{paired[k][1]:.2f}, {paired[k][2]:.2f}]" if k in ratios else ""))
    return path
