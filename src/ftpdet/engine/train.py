"""The training loop, read top to bottom: setup and resume, then per step
lr -> forward -> named losses -> backward -> clip -> step -> log; per epoch eval -> checkpoint -> plot.

Run directory: config.yaml (resolved), metrics.jsonl (one JSON object per log step / eval),
last.pt and best.pt (atomic), curves.png, eval.json (final metrics of best.pt).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

import ftpdet.engine.distributed as dist
from ftpdet.config import Config, TrainConfig
from ftpdet.data.coco import Categories, CocoDetection, collate
from ftpdet.distill import build_methods
from ftpdet.distill.base import Distiller, load_teacher
from ftpdet.engine.checkpoint import FORMAT_VERSION, checkpoint_config, ensure_writable, load_checkpoint, save_atomic
from ftpdet.engine.evaluate import evaluate, summarize
from ftpdet.errors import ConfigError, Interrupted, TrainingError
from ftpdet.models.criterion import GFLLoss
from ftpdet.models.detector import build_detector


@dataclass
class TrainResult:
    out_dir: Path
    best_metrics: dict[str, float]
    last_metrics: dict[str, float]
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def lr_factor(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Multiplier on cfg.lr: linear warmup from 0.1 over warmup_steps (large early updates on a randomly
    initialised head blow up GroupNorm statistics), then cosine from 1 down to min_lr_ratio."""
    if step < cfg.warmup_steps:
        return 0.1 + 0.9 * step / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on norms, biases and the per-level scales: decaying them only fights the data."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_datasets(cfg: Config, categories: Categories | None = None) -> tuple[CocoDetection, CocoDetection]:
    d = cfg.data
    d.require_paths()
    train_ds = CocoDetection(
        d.train_ann, d.train_images, d.image_size, train=True, categories=categories,
        cache_images=d.cache_images, hflip=d.hflip, photometric=d.photometric,
    )
    val_ds = CocoDetection(
        d.val_ann, d.val_images, d.image_size, train=False, categories=train_ds.categories, cache_images=d.cache_images
    )
    return train_ds, val_ds


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


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a signal to another process"


class MetricsLog:
    """metrics.jsonl: append-only, one JSON object per line, flushed at once so a crash loses nothing."""

    def __init__(self, path: Path, keep_from_step: int | None = None) -> None:
        self.path = path
        if keep_from_step is not None and path.exists():
            # On resume, drop lines written after the checkpoint we resume from: they will be redone.
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= keep_from_step]
            path.write_text("".join(ln + "\n" for ln in kept))
        elif path.exists():
            path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


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
    """Train a detector from cfg; with `teacher`, distil it from that checkpoint with `method`
    (default cfg.distill.method). `stop_after` ends this call after that many epochs (the schedule still
    spans cfg.train.epochs), so a long run can be done in slices with `resume=True`."""
    tc = cfg.train
    out = Path(tc.out_dir)
    last_path, best_path = out / "last.pt", out / "best.pt"
    ckpt = None
    if resume:
        ckpt = load_checkpoint(last_path)
        stored = checkpoint_config(ckpt, last_path)
        if stored.model != cfg.model:
            raise ConfigError(f"{last_path}: --resume with another model config than the run was started with")
        if teacher is None and ckpt.get("teacher"):
            teacher, method = ckpt["teacher"], method or ckpt.get("method")
    elif last_path.exists() and not overwrite:
        raise ConfigError(f"{out}: already holds a run; pass --resume to continue it or --overwrite to start over")
    if teacher is not None:
        method = method or cfg.distill.method
        cfg = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={"method": method})})
    if os.environ.get("RANK", "0") == "0":  # rank 0 writes (torchrun sets RANK; the group is not joined yet)
        ensure_writable(out)  # fail now, not after the first epoch's work

    torch.manual_seed(tc.seed)  # the seed fixes model init, data order and augmentation
    rank, world, device = dist.setup(resolve_device(tc.device))
    main = rank == 0  # only rank 0 writes files, evaluates and draws progress bars
    progress = progress and main
    categories = Categories.from_dict(ckpt["categories"]) if ckpt else None
    train_ds, val_ds = build_datasets(cfg, categories)
    model = build_detector(cfg.model, train_ds.num_classes).to(device)
    if world > 1 and device.type == "cuda":  # batch statistics over the global batch (CPU DDP keeps them per rank)
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    criterion = GFLLoss(cfg.loss, train_ds.num_classes, cfg.model.reg_max, cfg.model.atss_topk, cfg.model.atss_fallback)
    distiller = None
    if teacher is not None:
        # Paired seeds: building the teacher and the methods' adapters draws random numbers; doing it on a
        # forked generator leaves the augmentation stream exactly as a plain run of the same seed sees it.
        with torch.random.fork_rng(devices=[]):
            teacher_model = load_teacher(teacher, model, train_ds.categories).to(device)
            methods = build_methods(method, cfg.distill, model, teacher_model).to(device)
        distiller = Distiller(model, teacher_model, methods, criterion)
    trainable = distiller if distiller is not None else model  # adapters (if any) train with the student
    optimizer = build_optimizer(trainable, tc)
    if world > 1:
        torch.manual_seed(tc.seed + rank)  # per-rank augmentation; DDP broadcasts rank 0's initial weights
    step_fn = DDP(trainable) if world > 1 else trainable

    sampler = EpochSampler(DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=tc.seed,
                                              drop_last=True))
    batch_size = dist.per_rank_batch(tc.batch_size, world)
    loader = DataLoader(
        train_ds, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
        num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0,
    )
    steps_per_epoch = len(sampler.base) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size={tc.batch_size} is larger than the training set ({len(train_ds)} images)")
    total_steps = steps_per_epoch * tc.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, tc))

    start_epoch, step, best_ap, history = 0, 0, -1.0, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if distiller is not None:
            distiller.methods.load_state_dict(ckpt.get("distill_state", {}))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        rng = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(rng) == world:
            torch.set_rng_state(rng[rank])
        else:  # resumed at another world size: a fresh augmentation stream per rank, from the step reached
            torch.manual_seed(tc.seed + 7919 * ckpt["step"] + rank)
        start_epoch, step, best_ap = ckpt["epoch"], ckpt["step"], ckpt["best_ap"]
        history = list(ckpt.get("history", []))
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        log = MetricsLog(out / "metrics.jsonl", keep_from_step=step if ckpt else None)
        what = f"distill ({method}) from {teacher}" if distiller is not None else "train"
        procs = f" x {world} processes" if world > 1 else ""
        print(f"ftpdet {what}: {len(train_ds)} train / {len(val_ds)} val images, {train_ds.num_classes} classes, "
              f"{steps_per_epoch} steps/epoch x {tc.epochs} epochs on {device}{procs} -> {out}")

    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.amp == "bf16")
    weights = criterion.weights
    train_seconds = float(ckpt.get("train_seconds", 0.0)) if ckpt else 0.0
    last_metrics: dict[str, float] = history[-1]["metrics"] if history else {}
    end_epoch = tc.epochs if stop_after is None else min(tc.epochs, start_epoch + stop_after)

    def save_last(epoch: int) -> None:
        """last.pt after `step` steps (epoch = completed epochs; a mid-epoch save resumes inside the epoch)."""
        rng_ranks = dist.gather(torch.get_rng_state())  # a collective: every rank takes part
        if not main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "step": step,
            "best_ap": best_ap,
            "config": cfg.model_dump(),
            "categories": train_ds.categories.to_dict(),
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,
            "train_seconds": train_seconds,
            "history": history,
            "version": FORMAT_VERSION,
            "method": method if distiller is not None else None,
            "teacher": str(teacher) if distiller is not None else None,
        }
        if distiller is not None and len(distiller.methods.state_dict()):
            state["distill_state"] = distiller.methods.state_dict()  # training-only adapters, for --resume
        save_atomic(state, last_path)
        if improved:  # best.pt is for inference and as a teacher: no optimizer state, no training-only adapters
            drop = ("optimizer", "scheduler", "distill_state", "rng", "rng_ranks")
            save_atomic({k: v for k, v in state.items() if k not in drop}, best_path)

    trainable.train()
    improved = False
    with dist.StopRequest() as stop:
        for epoch in range(start_epoch, end_epoch):
            skip = step - epoch * steps_per_epoch  # > 0 when resuming a run that was stopped mid-epoch
            sampler.set_epoch(epoch, skip * batch_size)
            running: dict[str, float] = {}
            t_epoch = time.perf_counter()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", unit="it", leave=False, disable=not progress,
                       initial=skip, total=steps_per_epoch)
            for images, targets in bar:
                images = images.to(device, non_blocking=True)
                if distiller is not None:
                    terms, distill_terms = step_fn(images, targets, amp)
                else:
                    with amp:
                        outputs = step_fn(images)
                    terms, _ = criterion(outputs, model.priors(outputs), targets)
                    distill_terms = {}
                weighted = {k: weights[k] * v for k, v in terms.items()} | distill_terms
                loss = sum(weighted.values())
                if dist.any_rank(not torch.isfinite(loss).item()):
                    values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                    keep = f"last good checkpoint: {last_path}" if last_path.exists() else "no checkpoint was written yet"
                    raise TrainingError(f"non-finite loss at step {step} (epoch {epoch + 1}): {values}; stopped, {keep}. "
                                        "Try a lower train.lr or train.grad_clip")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(trainable.parameters(), tc.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                for k, v in weighted.items():
                    running[k] = running.get(k, 0.0) + v.item()
                running["loss"] = running.get("loss", 0.0) + loss.item()
                running["_n"] = running.get("_n", 0) + 1
                if step % tc.log_every == 0:
                    n = running.pop("_n")
                    record = dist.mean_over_ranks({k: v / n for k, v in running.items()})
                    if main:
                        bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in record.items()})
                        log.write({"step": step, "epoch": epoch + 1, "lr": scheduler.get_last_lr()[0], **record})
                    running = {}
                if dist.any_rank(stop.requested):
                    break
            train_seconds += time.perf_counter() - t_epoch
            if dist.any_rank(stop.requested):
                improved = False
                save_last(epoch)  # mid-epoch: `epoch` epochs are complete, `step` says how far into the next
                bar.close()
                if main:
                    print(f"\nstopped by {signal_name(stop.signum)} at step {step} (epoch {epoch + 1}); {last_path} "
                          "holds this step: continue with --resume")
                dist.cleanup()
                raise Interrupted(f"stopped at step {step}; {last_path} holds it: continue with --resume",
                                  stop.signum or signal.SIGTERM)

            is_last = epoch + 1 == tc.epochs
            improved = False
            if (epoch + 1) % tc.eval_every == 0 or is_last:
                metrics = evaluate(model, val_ds, cfg.eval, progress=progress)[0] if main else None
                metrics = dist.broadcast(metrics)
                last_metrics = metrics
                history.append({"epoch": epoch + 1, "step": step, "metrics": metrics})
                improved = metrics["AP"] > best_ap
                best_ap = max(best_ap, metrics["AP"])
                if main:
                    log.write({"step": step, "epoch": epoch + 1, "eval": metrics, "train_seconds": train_seconds})
                    tqdm.write(f"epoch {epoch + 1}/{tc.epochs}  {summarize(metrics)}  ({train_seconds:.0f} s training)")
            save_last(epoch + 1)

    best = max((h["metrics"] for h in history), key=lambda m: m["AP"], default={})
    if main:
        from ftpdet.plots import plot_curves  # matplotlib import costs ~1 s: only when a run finishes

        plot_curves(out / "metrics.jsonl", out / "curves.png", title=out.name)
        if end_epoch == tc.epochs and best:
            (out / "eval.json").write_text(json.dumps({"best": best, "last": last_metrics}, indent=2))
    dist.barrier()
    return TrainResult(out, best, last_metrics, train_seconds, history)
