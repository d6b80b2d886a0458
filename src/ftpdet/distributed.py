"""Ground floor: scale-out through PyTorch DDP, launched by torchrun: `torchrun --nproc_per_node N -m ftpdet train ...`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; `setup` joins the process group
(nccl on GPUs, gloo on CPUs) and picks this rank's device. Without those variables everything here is a
no-op for a single process, so the same code path trains with or without DDP. Every collective of the
package lives here, the loss normaliser included, so what must run on every rank is in one file.

Conventions the trainer follows: `train.batch_size` is the global batch, split evenly across ranks, so a
config means the same optimisation at any world size; rank 0 alone writes files and evaluates.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import torch
import torch.distributed as dist

from ftpdet.errors import ConfigError


def setup(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world_size, device) for this process; joins the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def per_rank_batch(global_batch: int, world: int) -> int:
    if global_batch % world:
        raise ConfigError(f"train.batch_size={global_batch} must be divisible by the number of processes ({world}): "
                          "it is the global batch, split evenly across ranks")
    return global_batch // world


def normaliser(x: torch.Tensor, minimum: float = 1.0) -> torch.Tensor:
    """A loss normaliser (number of positives, sum of weights) that makes DDP match one process: the sum over
    ranks, clamped at `minimum`, divided by the world size. DDP averages gradients over ranks, so each rank's
    (local sum / this) averages to (global sum / max(global normaliser, minimum)), the single-process loss.
    (Clamping each rank's mean instead, as GFL does, halves the loss whenever the clamp is active.)
    A collective under DDP: every rank must call it, whether or not it has positives."""
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
        return x.clamp(min=minimum) / dist.get_world_size()
    return x.clamp(min=minimum)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average logged numbers over ranks (each rank saw a different part of the global batch)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(keys, (t / dist.get_world_size()).tolist()))


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any: ranks must agree on when to stop, or collectives hang."""
    if not is_distributed():
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t)
    return bool(t.item())


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


class StopRequest:
    """SIGINT / SIGTERM set a flag instead of killing the process mid-step; the trainer checks it after each
    step, writes a checkpoint at that step and stops, so an interrupted run resumes exactly where it was.
    A second signal restores the default behaviour (a user who presses Ctrl-C twice means it)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        try:
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: signals cannot be caught here
            self._previous.clear()
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    @property
    def requested(self) -> bool:
        return self.signum is not None
