"""Checkpoints: one plain dict, written atomically, read with weights_only=True.

Contents: `model` (student weights only), `optimizer`, `scheduler`, `epoch`, `step`, `best_ap`,
`config` (the resolved config as plain data), `categories` ({ids, names}), `rng` (torch RNG state),
`version`. Everything is tensors, numbers, strings, lists and dicts, so no code is ever unpickled.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ftpdet.config import Config, config_from_dict
from ftpdet.data.coco import Categories
from ftpdet.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1


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


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load safely. A file holding pickled code (or anything but plain data) is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    ckpt = safe_load(path, "ftpdet checkpoint")
    if not isinstance(ckpt, dict) or not {"model", "config", "categories"} <= set(ckpt):
        raise CheckpointError(f"{path}: not an ftpdet checkpoint (expected keys model, config, categories)")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any], path: str | Path) -> Config:
    return config_from_dict(ckpt["config"], source=f"{path} (stored config)")


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a detector from a checkpoint: architecture from the stored config, then the weights."""
    from ftpdet.models.detector import build_detector  # local: keeps checkpoint I/O importable without models

    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    cats = Categories.from_dict(ckpt["categories"])
    model_cfg = cfg.model.model_copy(update={"backbone_weights": None})  # weights come from the checkpoint
    model = build_detector(model_cfg, len(cats.ids))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored model config ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg, cats
