"""The training loop, read top to bottom: `train()` = setup (or resume) -> per epoch: steps -> evaluation ->
checkpoint -> at the end, plots and eval.json. The step itself (forward, weighted terms, backward, update) is
engine/step.py, shared with `ftpdet bench speed`.

With train.ema, the weight average is what is evaluated and what checkpoints give for inference.
Run directory: config.yaml (resolved), metrics.jsonl (one JSON object per log step / eval; every loss term
weighted under its name and raw as `<name>_raw`), tensorboard/ when train.loggers lists it (engine/loggers.py),
last.pt and best.pt (atomic), curves.png, eval.json.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, Sampler

import ftpdet.distributed as dist
from ftpdet.checkpoint import checkpoint_config, load_checkpoint, load_teacher, save_checkpoint
from ftpdet.config import Config
from ftpdet.data.coco import Categories, CocoDetection, collate, join_batches
from ftpdet.data.transforms import Resize
from ftpdet.data.unlabeled import UnlabeledImages, UnlabeledStream, copies_warning, load_unlabeled
from ftpdet.engine.evaluate import evaluate, summarize
from ftpdet.engine.loggers import RunLog
from ftpdet.engine.onnx_teacher import teacher_runtime
from ftpdet.engine.run_precision import RunPrecision, resolve_precisions
from ftpdet.engine.step import NonFiniteLoss, Trainee, TrainStep, build_optimizer, weight_average, weight_table
from ftpdet.errors import ConfigError, Interrupted, TrainingError
from ftpdet.files import ensure_writable
from ftpdet.methods import NEEDS_UNLABELED, build_methods, parse_method
from ftpdet.models.criterion import GFLLoss
from ftpdet.models.detector import GFLDetector, build_detector
from ftpdet.models.precision import Precision
from ftpdet.progress import progress_bar, progress_write
from ftpdet.sections import TrainConfig


@dataclass
class TrainResult:
    out_dir: Path
    best_metrics: dict[str, float]
    last_metrics: dict[str, float]
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def lr_factor(step: int, total_steps: int, cfg: TrainConfig, steps_per_epoch: int = 1) -> float:
    """Multiplier on cfg.lr: linear warmup from warmup_ratio over warmup_steps (large early updates on a randomly
    initialised head blow up GroupNorm statistics), then cosine from 1 down to min_lr_ratio, or (lr_schedule
    step) 0.1 ** (the lr_steps epochs already done), as mmdetection's step policy."""
    # The complement is rounded so that a ratio written in decimal has its exact decimal complement (1 - 0.1 is
    # 0.8999999999999999 in floats, 0.9 here): the default schedule stays bit for bit what it was before the ratio
    # became a setting, and with it every run's numbers.
    warm = cfg.warmup_ratio + round(1 - cfg.warmup_ratio, 12) * step / cfg.warmup_steps if step < cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "step":
        return warm * 0.1 ** sum(step >= e * steps_per_epoch for e in cfg.lr_steps)
    if step < cfg.warmup_steps:
        return warm
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine


def build_datasets(cfg: Config, categories: Categories | None = None) -> tuple[CocoDetection, CocoDetection]:
    d = cfg.data
    d.require_paths()
    if d.format == "coco":
        sources = {"train": (d.train_ann, d.train_images, None), "val": (d.val_ann, d.val_images, None)}
    else:  # YOLO or VOC read in place: COCO dicts in memory whose file_names are absolute paths
        from ftpdet.data.convert import coco_splits  # here, not at the top: COCO runs never execute the readers

        splits = coco_splits(d.format, d.root)
        folder = d.root if Path(d.root).is_dir() else str(Path(d.root).parent)  # a YOLO root may be its data.yaml
        sources = {split: (f"{d.root} ({d.format} {split})", folder, splits[split]) for split in ("train", "val")}
    resize = Resize.of(d)
    ann, images, coco = sources["train"]
    train_ds = CocoDetection(
        ann, images, resize, train=True, categories=categories,
        cache_images=d.cache_images, hflip=d.hflip, photometric=d.photometric, coco=coco,
    )
    ann, images, coco = sources["val"]
    val_ds = CocoDetection(
        ann, images, resize, train=False, categories=train_ds.categories, cache_images=d.cache_images, coco=coco
    )
    return train_ds, val_ds


def loader_workers(num_workers: int | None, device: torch.device) -> int:
    """data.num_workers, or its default: none on a CPU, up to 8 loader processes on CUDA."""
    if num_workers is not None:
        return num_workers
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class EpochSampler(Sampler):
    """DistributedSampler's order for an epoch, optionally starting `skip` samples in: a run stopped mid-epoch
    resumes with exactly the batches it had not seen, in the order it would have seen them."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base, self.skip = base, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return len(self.base) - self.skip


@dataclass
class Unlabeled:
    """The unlabeled stream of a run: its images, this rank's batch sampler and its loader."""

    dataset: UnlabeledImages
    stream: UnlabeledStream
    loader: DataLoader
    warnings: list[str]

    def batches(self, position: int) -> Iterator[tuple[torch.Tensor, list[dict]]]:
        """This rank's batches from global stream position `position` on, one per step, endless."""
        self.stream.start = position
        return iter(self.loader)


def build_unlabeled(cfg: Config, train_ds: CocoDetection, batch_size: int, rank: int, world: int,
                    device: torch.device) -> Unlabeled:
    """data.unlabeled's images (labeled copies left out and reported), and `round(unlabeled_ratio * batch_size)`
    of them per rank and step."""
    d = cfg.data
    records, copies = load_unlabeled(d.unlabeled, d.unlabeled_images, [r.path for r in train_ds.records],
                                     d.unlabeled_labels, train_ds.categories)
    dataset = UnlabeledImages(records, Resize.of(d), cfg.train.seed, d.cache_images, d.hflip, d.photometric)
    per_rank = max(1, round(d.unlabeled_ratio * batch_size))
    stream = UnlabeledStream(len(records), per_rank, cfg.train.seed, rank=rank, world=world)
    workers = loader_workers(d.num_workers, device)
    # Its own generator: starting this loader draws no number from the global one, which the labeled stream's
    # augmentation (and its exact resume) reads.
    loader = DataLoader(dataset, batch_sampler=stream, collate_fn=collate, num_workers=workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    return Unlabeled(dataset, stream, loader, [copies_warning(d.unlabeled, copies)] if copies else [])


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a signal to another process"


def stopped(run: Run, stop: dist.StopRequest, where: str) -> Interrupted:
    """What a stop request ends in, once last.pt holds the step: rank 0 says `where` it stopped, every rank leaves the
    process group, and the caller raises the returned Interrupted (the CLI exits with 128 + the signal)."""
    if run.main:
        print(f"\nstopped by {signal_name(stop.signum)} {where}")
    dist.cleanup()
    return Interrupted(f"stopped {where}", stop.signum or signal.SIGTERM)


@dataclass
class Run:
    """Everything one training run holds: built by `setup`, advanced by `train_epoch`, saved by `save_last`."""

    cfg: Config
    out: Path
    rank: int
    world: int
    device: torch.device
    train_ds: CocoDetection
    val_ds: CocoDetection
    model: GFLDetector  # the student: what is evaluated and saved
    trainee: Trainee  # student + teacher + methods: what trains
    step: TrainStep
    sampler: EpochSampler
    loader: DataLoader
    batch_size: int  # per rank
    steps_per_epoch: int
    method: str | None  # None: a plain run
    teacher: str | Path | None
    ema: torch.nn.Module | None  # the weight average (train.ema), evaluated and saved for inference when set
    precision: RunPrecision  # how student and teacher run on this machine (resolved at setup)
    unlabeled: Unlabeled | None = None  # the unlabeled stream (data.unlabeled), when set
    # progress, restored on resume
    epoch: int = 0  # completed epochs
    global_step: int = 0
    best_ap: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    unlabeled_position: int = 0  # unlabeled images consumed by all ranks: where the stream resumes

    @property
    def main(self) -> bool:  # only rank 0 writes files, evaluates and draws progress bars
        return self.rank == 0

    @property
    def inference_model(self) -> GFLDetector:
        """What is evaluated and what a loaded checkpoint holds: the weight average when train.ema is set."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"


def resolve_run(cfg: Config, resume: bool, overwrite: bool, teacher: str | Path | None,
                method: str | None) -> tuple[Config, dict | None, str | Path | None, str | None]:
    """The checkpoint to resume from (or None), and the teacher and method: the arguments, else the checkpoint's
    (on resume), else the config's `distill.teacher` / `distill.method`. The config returned records both."""
    out = Path(cfg.train.out_dir)
    ckpt = None
    if resume:
        last_path = out / "last.pt"
        ckpt = load_checkpoint(last_path)
        stored = checkpoint_config(ckpt, last_path)
        if stored.model != cfg.model:
            raise ConfigError(f"{last_path}: --resume with another model config than the run was started with")
        if teacher is None and ckpt.get("teacher"):
            teacher, method = ckpt["teacher"], method or ckpt.get("method")
    elif (out / "last.pt").exists() and not overwrite:
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or --overwrite to start over")
    teacher = teacher if teacher is not None else cfg.distill.teacher
    if teacher is not None:
        method = method or cfg.distill.method
        cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"method": method,
                                                                               "teacher": str(teacher)})})
    return cfg, ckpt, teacher, method


def setup(cfg: Config, ckpt: dict | None, teacher: str | Path | None, method: str | None) -> Run:
    """Seed, join DDP, build data, student, (teacher, methods), optimizer, schedule and loader; restore a
    checkpoint. The order fixes which random numbers each part draws: keep it."""
    tc = cfg.train
    torch.manual_seed(tc.seed)  # the seed fixes model init, data order and augmentation
    rank, world, device = dist.setup(resolve_device(tc.device))
    categories = Categories.from_dict(ckpt["categories"]) if ckpt else None
    train_ds, val_ds = build_datasets(cfg, categories)
    model = build_detector(cfg.model, train_ds.num_classes).to(device)
    if world > 1 and device.type == "cuda":  # batch statistics over the global batch (CPU DDP keeps them per rank)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    criterion = GFLLoss(cfg.loss, train_ds.num_classes, cfg.model.reg_max, cfg.model.atss_topk, cfg.model.atss_fallback)
    teacher_model, methods, teacher_forward, teacher_cfg = None, None, None, None
    if teacher is not None:
        # Paired seeds: building the teacher and the methods' adapters draws random numbers; doing it on a
        # forked generator leaves the augmentation stream exactly as a plain run of the same seed sees it.
        with torch.random.fork_rng(devices=[]):
            teacher_model, teacher_cfg = load_teacher(teacher, model, train_ds.categories)
            teacher_model = teacher_model.to(device)
            methods = build_methods(method, cfg.distill, model, teacher_model).to(device)
            teacher_forward = teacher_runtime(cfg.distill.teacher_runtime, teacher_model, cfg.data.image_size,
                                              Path(tc.out_dir) / f"teacher.rank{rank}.onnx", device)
    batch_size = dist.per_rank_batch(tc.batch_size, world)
    unlabeled = None
    if cfg.data.unlabeled is not None:
        if teacher is None and cfg.data.unlabeled_labels is None:
            raise ConfigError(f"data.unlabeled={cfg.data.unlabeled}: unlabeled images train through a teacher's "
                              "responses; distil (ftpdet distill --teacher T.pt --unlabeled DIR)")
        unlabeled = build_unlabeled(cfg, train_ds, batch_size, rank, world, device)
    elif teacher is not None and (controls := [m for m in parse_method(method) if m in NEEDS_UNLABELED]):
        raise ConfigError(f"distill.method {method!r}: {controls[0]} trains on unlabeled images only; "
                          "give them with --unlabeled DIR (data.unlabeled)")
    # Each model's precision and memory format, resolved on this machine (the teacher's too, whatever its
    # checkpoint was trained at); rank 0 times the candidates, every rank runs its answer.
    prec = dist.broadcast(resolve_precisions(cfg, model, train_ds.num_classes, teacher_model, teacher_cfg, device,
                                             batch_size, ckpt) if rank == 0 else None)
    cfg = prec.config
    tc = cfg.train
    # Adapters (if any) train with the student; each model runs at its own precision and memory format.
    trainee = Trainee(model, criterion, teacher_model, methods, prec.student.precision,
                      prec.teacher.precision if prec.teacher else Precision(), teacher_forward,
                      cfg.distill.unlabeled_score_thr, cfg.eval)
    optimizer = build_optimizer(trainee, tc)
    if world > 1:
        torch.manual_seed(tc.seed + rank)  # per-rank augmentation; DDP broadcasts rank 0's initial weights
    forward = DDP(trainee) if world > 1 else trainee

    sampler = EpochSampler(DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=tc.seed,
                                              drop_last=True))
    workers = loader_workers(cfg.data.num_workers, device)
    loader = DataLoader(
        train_ds, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda",
    )
    steps_per_epoch = len(sampler.base) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size={tc.batch_size} is larger than the training set ({len(train_ds)} images)")
    total_steps = steps_per_epoch * tc.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, tc, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type) if prec.student.precision.amp == "fp16" else None
    weights = weight_table(cfg.loss, cfg.distill, method if teacher is not None else None)
    ema = weight_average(model, tc.ema, tc.warmup_steps) if tc.ema is not None else None
    step = TrainStep(trainee, optimizer, weights, tc.grad_clip, scheduler, forward, ema, scaler)
    run = Run(cfg, Path(tc.out_dir), rank, world, device, train_ds, val_ds, model, trainee, step, sampler, loader,
              batch_size, steps_per_epoch, method if teacher is not None else None, teacher, ema, prec, unlabeled)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            if "ema" not in ckpt:
                raise ConfigError(f"{run.last_path}: --resume with train.ema set, but the run was started without it")
            ema.module.load_state_dict(ckpt["ema"])
            ema.n_averaged.fill_(int(ckpt["ema_updates"]))
        trainee.methods.load_state_dict(ckpt.get("distill_state", {}))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and "grad_scaler" in ckpt:
            scaler.load_state_dict(ckpt["grad_scaler"])
        rng = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(rng) == world:
            torch.set_rng_state(rng[rank])
        else:  # resumed at another world size: a fresh augmentation stream per rank, from the step reached
            torch.manual_seed(tc.seed + 7919 * ckpt["step"] + rank)
        run.epoch, run.global_step, run.best_ap = ckpt["epoch"], ckpt["step"], ckpt["best_ap"]
        run.history = list(ckpt.get("history", []))
        run.unlabeled_position = int(ckpt.get("unlabeled_position", 0))
        run.train_seconds = float(ckpt.get("train_seconds", 0.0))
    return run


def save_last(run: Run, epoch: int, improved: bool) -> None:
    """last.pt after `run.global_step` steps (epoch = completed epochs; a mid-epoch save resumes inside the epoch);
    best.pt too when this epoch's evaluation `improved` on the best AP so far."""
    rng_ranks = dist.gather(torch.get_rng_state())  # a collective: every rank takes part
    if not run.main:
        return
    distilled = run.method is not None
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.step.optimizer.state_dict(),
        "scheduler": run.step.scheduler.state_dict(),
        **({"grad_scaler": run.step.scaler.state_dict()} if run.step.scaler is not None else {}),
        "epoch": epoch,
        "step": run.global_step,
        "best_ap": run.best_ap,
        "config": run.cfg.model_dump(),
        "categories": run.train_ds.categories.to_dict(),
        "rng": rng_ranks[0],
        "rng_ranks": rng_ranks,
        "train_seconds": run.train_seconds,
        "history": run.history,
        "method": run.method,
        "teacher": str(run.teacher) if distilled else None,
        "precision": run.precision.record(),
        "unlabeled_position": run.unlabeled_position,
    }
    if distilled and len(run.trainee.methods.state_dict()):
        state["distill_state"] = run.trainee.methods.state_dict()  # training-only adapters, for --resume
    if run.ema is not None:  # loading a checkpoint for inference takes these weights (checkpoint.load_model)
        state["ema"] = run.ema.module.state_dict()
        state["ema_updates"] = int(run.ema.n_averaged)
    save_checkpoint(state, run.last_path)
    if improved:  # best.pt is for inference and as a teacher: no optimizer state, no training-only adapters
        drop = ("optimizer", "scheduler", "distill_state", "rng", "rng_ranks")
        save_checkpoint({k: v for k, v in state.items() if k not in drop}, run.best_path)


def train_epoch(run: Run, epoch: int, log: RunLog | None, stop: dist.StopRequest, progress: bool) -> bool:
    """One epoch of steps (from where a mid-epoch stop left it); logs every `log_every` steps. Returns False when
    a stop was requested (the epoch is then incomplete)."""
    tc = run.cfg.train
    skip = run.global_step - epoch * run.steps_per_epoch  # > 0 when resuming a run that was stopped mid-epoch
    run.sampler.set_epoch(epoch, skip * run.batch_size)
    running: dict[str, float] = {}
    count = 0
    t_epoch = time.perf_counter()
    batches: Iterable = run.loader
    if skip:
        # Starting the loader draws its base seed from the global generator (DataLoader.__iter__). The uninterrupted
        # run drew it at the epoch's start, before the batches this checkpoint has seen; draw it, then put back the
        # checkpoint's state, so the augmentation continues with the random numbers the uninterrupted run used.
        rng = torch.get_rng_state()
        batches = iter(run.loader)
        torch.set_rng_state(rng)
    bar = progress_bar(batches, desc=f"epoch {epoch + 1}/{tc.epochs}", unit="it", enabled=progress, initial=skip,
                       total=run.steps_per_epoch)
    unlabeled = run.unlabeled.batches(run.unlabeled_position) if run.unlabeled is not None else None
    completed = True
    for images, targets in bar:
        if unlabeled is not None:  # the labeled images first, then this step's unlabeled ones
            images, targets = join_batches((images, targets), next(unlabeled))
        try:
            out = run.step(images.to(run.device, non_blocking=True), targets)
        except NonFiniteLoss as e:
            keep = f"last good checkpoint: {run.last_path}" if run.last_path.exists() else "no checkpoint was written yet"
            raise TrainingError(f"non-finite loss at step {run.global_step} (epoch {epoch + 1}): {e}; stopped, {keep}. "
                                "Try a lower train.lr or train.grad_clip") from None
        run.global_step += 1
        if unlabeled is not None:
            run.unlabeled_position += run.unlabeled.stream.per_step
            for k, v in run.trainee.stats.items():
                running[k] = running.get(k, 0.0) + v
        for k, v in out.weighted.items():
            running[k] = running.get(k, 0.0) + v.item()
        running["loss"] = running.get("loss", 0.0) + out.loss.item()
        for k, v in out.raw.items():
            running[f"{k}_raw"] = running.get(f"{k}_raw", 0.0) + v.item()
        count += 1
        if run.global_step % tc.log_every == 0:
            record = dist.mean_over_ranks({k: v / count for k, v in running.items()})
            if log is not None:
                bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in record.items() if not k.endswith("_raw")})
                seen = {"unlabeled_seen": run.unlabeled_position} if unlabeled is not None else {}
                log.train({"step": run.global_step, "epoch": epoch + 1, "lr": run.step.scheduler.get_last_lr()[0],
                           **seen, **record})
            running, count = {}, 0
        if dist.any_rank(stop.requested):
            completed = False
            break
    run.train_seconds += time.perf_counter() - t_epoch
    bar.close()
    return completed


def evaluate_epoch(run: Run, epoch: int, log: RunLog | None, progress: bool) -> bool:
    """COCO AP of the student on the validation set (rank 0; every rank gets the numbers). Returns whether it
    improved on the best AP so far."""
    metrics, detections = evaluate(run.inference_model, run.val_ds, run.cfg.eval, progress=progress) if run.main else (None, [])
    metrics = dist.broadcast(metrics)
    run.history.append({"epoch": epoch + 1, "step": run.global_step, "metrics": metrics})
    improved = metrics["AP"] > run.best_ap
    run.best_ap = max(run.best_ap, metrics["AP"])
    if log is not None:
        log.eval(run.global_step, epoch + 1, metrics, run.train_seconds, detections)
        progress_write(f"epoch {epoch + 1}/{run.cfg.train.epochs}  {summarize(metrics)}  ({run.train_seconds:.0f} s training)")
    return improved


def train(
    cfg: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    teacher: str | Path | None = None,
    method: str | None = None,
) -> TrainResult:
    """Train a detector from cfg; with a teacher (`teacher`, else the config's `distill.teacher`), distil it from
    that checkpoint with `method` (default cfg.distill.method). `stop_after` ends this call after that many epochs
    (the schedule still spans cfg.train.epochs), so a long run can be done in slices with `resume=True`."""
    cfg, ckpt, teacher, method = resolve_run(cfg, resume, overwrite, teacher, method)
    out = Path(cfg.train.out_dir)
    if os.environ.get("RANK", "0") == "0":  # rank 0 writes (torchrun sets RANK; the group is not joined yet)
        ensure_writable(out)  # fail now, not after the first epoch's work
    run = setup(cfg, ckpt, teacher, method)
    cfg = run.cfg  # with each model's precision resolved on this machine
    tc = cfg.train
    progress = progress and run.main
    log = None
    if run.main:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        log = RunLog(out, tc.loggers, keep_from_step=run.global_step if ckpt else None, val_ds=run.val_ds)
        what = f"distill ({run.method}) from {teacher}" if run.method else "train"
        procs = f" x {run.world} processes" if run.world > 1 else ""
        print(f"ftpdet {what}: {len(run.train_ds)} train / {len(run.val_ds)} val images, {run.train_ds.num_classes} "
              f"classes, {run.steps_per_epoch} steps/epoch x {tc.epochs} epochs on {run.device}{procs} -> {out}")
        if run.unlabeled is not None:
            n, per_step = len(run.unlabeled.dataset), run.unlabeled.stream.per_step
            passes = per_step * run.steps_per_epoch * tc.epochs / n
            how = (f"with their own labels from {cfg.data.unlabeled_labels}" if cfg.data.unlabeled_labels else
                   f"teacher boxes above {cfg.distill.unlabeled_score_thr} stand in for labels where a method needs them")
            print(f"unlabeled: {n} images from {cfg.data.unlabeled}, {per_step} per step beside {tc.batch_size} labeled "
                  f"({passes:.1f} passes over them in {tc.epochs} epochs); {how}")
        print(run.precision.line)
        for message in run.precision.warnings + (run.unlabeled.warnings if run.unlabeled is not None else []):
            print(f"warning: {message}", file=sys.stderr)

    end_epoch = tc.epochs if stop_after is None else min(tc.epochs, run.epoch + stop_after)
    run.trainee.train()
    with dist.StopRequest() as stop:
        for epoch in range(run.epoch, end_epoch):
            if not train_epoch(run, epoch, log, stop, progress):
                save_last(run, epoch, improved=False)  # mid-epoch: `epoch` epochs done, the step says how far in
                if log is not None:
                    log.close()
                raise stopped(run, stop, f"at step {run.global_step} (epoch {epoch + 1}); {run.last_path} holds this "
                                         "step: continue with --resume")
            improved = False
            if (epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs:
                improved = evaluate_epoch(run, epoch, log, progress)
            run.epoch = epoch + 1
            save_last(run, epoch + 1, improved)

    history = run.history
    last_metrics: dict[str, float] = history[-1]["metrics"] if history else {}
    best = max((h["metrics"] for h in history), key=lambda m: m["AP"], default={})
    if log is not None:
        log.close()
    if run.main:
        from ftpdet.plots import plot_curves  # matplotlib import costs ~1 s: only when a run finishes

        plot_curves(out / "metrics.jsonl", out / "curves.png", title=out.name)
        if end_epoch == tc.epochs and best:
            (out / "eval.json").write_text(json.dumps({"best": best, "last": last_metrics}, indent=2))
    dist.barrier()
    if dist.any_rank(stop.requested):
        # The signal came after the last step (during the final evaluation or save): the run is whole and saved,
        # but whoever sent it wants the program to stop, not a bench to go on to its next run.
        raise stopped(run, stop, f"after the last step ({run.global_step}); {run.last_path} holds the finished run")
    return TrainResult(out, best, last_metrics, run.train_seconds, history)
