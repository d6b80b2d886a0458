"""How one model runs on its device: bf16 / fp16 autocast or float32, channels_last or the default memory format,
resolved on the machine that runs it (`train.amp: auto`, `train.channels_last: auto`, the shipped default).

Why per machine: bf16 autocast is ~1.6x faster than float32 for a ResNet on a CPU with native bf16 (AVX512-BF16 or
AMX) and ~10x slower on one that emulates it (AVX2 only: 10.2 s against 0.9 s per ResNet-18 step, docs/speed.md).
Why per model: even with native bf16 the depthwise MobileNetV3 student trains faster in float32 with channels_last.
So, as cudnn.benchmark does, `resolve` times a few forward (+ backward, for a model that trains) passes of the actual
model under each candidate the hardware allows, once per machine and model, and remembers the answer in a small
JSON cache (`$FTPDET_CACHE_DIR`, default `~/.cache/ftpdet`): the same machine always resolves the same way.

Candidates: on a CPU, float32 (and bf16 only where it is native), each in both memory formats; on CUDA, bf16 where
the GPU runs it natively (compute capability 8.0+), else fp16 (with a GradScaler when training), in both formats.
A candidate replaces float32 in the default format only when it is at least 5% faster, so noise on a busy machine
does not flip the choice. An explicit `bf16` where it is not native still runs, after a one-line warning.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from ftpdet.hardware import Capability
from ftpdet.sections import ModelConfig

MARGIN = 0.95  # a candidate must take at most 95% of float32's time to replace it
EMULATED_BF16_COST = "~10x slower than float32 here (bf16 is emulated; docs/speed.md)"


@dataclass(frozen=True)
class Precision:
    amp: str = "none"  # "none" (float32), "bf16" or "fp16" (autocast; fp16 trains with a GradScaler)
    channels_last: bool = False

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(device_type, dtype=dtype, enabled=self.amp in ("bf16", "fp16"))

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in this memory format (in place, as nn.Module.to)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def input(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in this memory format."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def describe(self) -> str:
        """`float32 + channels_last`, `bf16`, ..."""
        return {"none": "float32"}.get(self.amp, self.amp) + (" + channels_last" if self.channels_last else "")


def candidates(cap: Capability, amp: str = "auto", channels_last: bool | str = "auto") -> list[Precision]:
    """What the hardware allows for the settings left on auto, float32 in the default format first (the reference).
    An explicit setting is the only candidate for its part."""
    if amp != "auto":
        amps = [amp]
    elif cap.device == "cuda":
        amps = ["bf16" if cap.native_bf16 else "fp16"]
    else:
        amps = ["none", "bf16"] if cap.native_bf16 else ["none"]
    formats = [False, True] if channels_last == "auto" else [bool(channels_last)]
    return [Precision(a, f) for a in amps for f in formats]


def emulation_warning(cap: Capability, amp: str, who: str = "train.amp") -> str | None:
    """The one-line warning for an explicit precision this hardware only emulates (None when it is native)."""
    if amp == "bf16" and not cap.native_bf16:
        if cap.device == "cuda":
            return f"{who}=bf16 on {cap.name} ({cap.isa}), which has no native bf16: emulated, slower than fp16; use auto"
        return f"{who}=bf16 on a CPU without native bf16 ({cap.isa}): {EMULATED_BF16_COST}; use auto"
    if amp == "fp16" and cap.device == "cpu":
        return f"{who}=fp16 on a CPU ({cap.isa}): emulated, many times slower than float32; fp16 is for GPUs; use auto"
    return None


def _example_loss(out) -> torch.Tensor:
    leaves, _ = tree_flatten(out)
    return sum(t.float().sum() for t in leaves if isinstance(t, torch.Tensor) and t.is_floating_point())


def time_candidates(model: nn.Module, options: list[Precision], batch: int, image_size: int, device: torch.device,
                    train: bool, rounds: int = 3) -> dict[Precision, float]:
    """Seconds per pass of each option: the fastest of `rounds` timed passes after one warm-up, options taken in
    turn each round (a busy machine slows them alike). A pass is forward + backward of a sum of the outputs when
    `train`, else a no-grad forward in eval mode (a teacher). Runs on a copy of the model under a forked random
    generator: the model's weights and BatchNorm statistics and the run's random numbers stay as they were."""
    times: dict[Precision, list[float]] = {p: [] for p in options}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
        copies = {p: p.prepare(copy.deepcopy(model)).train(train) for p in options}
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for r in range(rounds + 1):
            for p in options:
                net = copies[p]
                sync()
                t = time.perf_counter()
                with torch.set_grad_enabled(train), p.autocast(device.type):
                    out = net(p.input(images))
                if train:
                    _example_loss(out).backward()
                    net.zero_grad(set_to_none=True)
                sync()
                if r:  # round 0 warms up (allocations, oneDNN primitive caches)
                    times[p].append(time.perf_counter() - t)
    return {p: min(ts) for p, ts in times.items()}


def choose(times: dict[Precision, float]) -> Precision:
    """The fastest option; the first (the reference, float32 in the default format on a CPU) unless another takes
    at most MARGIN of its time."""
    reference, *_ = times
    best = min(times, key=times.get)
    return best if times[best] <= MARGIN * times[reference] else reference


def cache_path() -> Path:
    return Path(os.environ.get("FTPDET_CACHE_DIR") or Path.home() / ".cache" / "ftpdet") / "precision.json"


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a missing or damaged cache costs one measurement, nothing else


def _write_cache(path: Path, key: str, entry: dict) -> None:
    """Add one entry: read, merge and replace under a lock, so processes timing at once (runs started side by side, a
    test suite's workers) never drop each other's entries."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:  # no POSIX locks (Windows): a lost entry only costs a measurement
                pass
            data = _read_cache(path) | {key: entry}
            fd, tmp = tempfile.mkstemp(prefix=".precision.", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measure again next time


@dataclass(frozen=True)
class Resolved:
    """A resolved precision and how it was decided: "set" (the config said), "rule" (one candidate), "measured"
    or "cached" (timed here, now or on an earlier run of the same machine and model)."""

    precision: Precision
    how: str
    times_ms: dict[str, float] | None = None


def resolve(model: nn.Module, model_key: dict, cap: Capability, amp: str, channels_last: bool | str, *, batch: int,
            image_size: int, device: torch.device, train: bool,
            timer: Callable[..., dict[Precision, float]] = time_candidates) -> Resolved:
    """The precision `model` runs at on this machine. `model_key`: what decides its speed besides the machine (its
    config and class count), for the cache. A single candidate needs no timing."""
    options = candidates(cap, amp, channels_last)
    if len(options) == 1:
        return Resolved(options[0], "set" if amp != "auto" and channels_last != "auto" else "rule")
    fields = {"machine": cap.describe(), "model": model_key, "batch": batch, "image_size": image_size, "train": train,
              "options": [asdict(p) for p in options]}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_path()
    hit = _read_cache(path).get(key)
    if isinstance(hit, dict) and isinstance(hit.get("choice"), dict):
        try:
            found = Precision(**hit["choice"])
        except TypeError:
            found = None
        if found in options:
            return Resolved(found, "cached", hit.get("times_ms"))
    times = timer(model, options, batch, image_size, device, train)
    choice = choose(times)
    times_ms = {p.describe(): round(1000 * t, 1) for p, t in times.items()}
    _write_cache(path, key, {"choice": asdict(choice), "times_ms": times_ms, "machine": cap.describe(),
                             "model": model_key.get("backbone", "?"), "train": train})
    return Resolved(choice, "measured", times_ms)


def model_key(model_cfg: ModelConfig, num_classes: int) -> dict:
    """What decides a model's speed besides the machine: its architecture (not where its weights come from)."""
    return {**model_cfg.model_dump(exclude={"backbone_weights"}), "num_classes": num_classes}


def summary_line(student: Resolved, teacher: Resolved | None, cap: Capability, teacher_note: str = "") -> str:
    """`precision: student float32 + channels_last, teacher float32 (this CPU has no native bf16: AVX2)`."""
    parts = [f"student {student.precision.describe()}"]
    if teacher is not None:
        parts.append(f"teacher {teacher_note or teacher.precision.describe()}")
    hows = {r.how for r in (student, teacher) if r is not None}
    notes = []
    if hows & {"measured", "cached"}:
        notes.append(f"the fastest candidates timed on this machine, remembered in {cache_path()}")
    if "resumed" in hows:
        notes.append("as the checkpoint ran on this machine")
    return f"precision: {', '.join(parts)} ({cap.bf16_reason()}{'; ' + '; '.join(notes) if notes else ''})"
