"""Ground floor: files that are never half-written and never run code when read.

- `ensure_writable`: prove a directory takes a file before any work that would be lost.
- `save_atomic`: torch.save to a temp file, fsync, rename: a crash never leaves half a checkpoint.
- `safe_load`: torch.load with weights_only=True, every failure as one line naming the file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ftpdet.errors import CheckpointError, ConfigError


def ensure_writable(directory: str | Path) -> Path:
    """Create `directory` and prove a file can be written there, before any work that would be lost."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{directory}: output directory is not writable ({e.strerror or e})") from None
    return directory


def save_atomic(obj: Any, path: str | Path) -> None:
    """Write to a temp file in the same directory, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a checkpoint is shared like any output
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_load(path: Path, what: str) -> Any:
    """torch.load with weights_only=True, every failure as one CheckpointError line naming the file. A file
    holding pickled code fails here, before anything in it runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure mode here is "not safe, plain data"
        text = str(e)
        # torch's message suggests weights_only=False; we never do that. Keep only the reason it refused.
        reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        reason = next((ln.strip() for ln in reason.splitlines() if ln.strip()), type(e).__name__)
        raise CheckpointError(f"{path}: not a loadable {what} (refused by weights_only loading: {reason})") from None
