"""Checkpoints: one plain dict, written atomically, read with weights_only=True, format version checked.

Contents: `model` (student weights only), `optimizer`, `scheduler`, `epoch`, `step`, `best_ap`,
`config` (the resolved config as plain data), `categories` ({ids, names}), `rng` (torch RNG state),
`version` (FORMAT_VERSION); with train.ema also `ema` (the averaged weights, which inference loads) and
`ema_updates`. Everything is tensors, numbers, strings, lists and dicts, so no code is ever
unpickled. A file written by a newer ftpdet (a higher version) is refused in one line instead of being
misread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ftpdet.config import Config, config_from_dict
from ftpdet.data.coco import Categories
from ftpdet.errors import CheckpointError
from ftpdet.files import safe_load, save_atomic
from ftpdet.models.detector import GFLDetector, build_detector, freeze
from ftpdet.provenance import version

FORMAT_VERSION = 1  # bump when a key changes meaning; load_checkpoint refuses versions it does not know


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Atomically write `state` with this format's version (and the package version, for people)."""
    save_atomic({**state, "version": FORMAT_VERSION, "ftpdet_version": version()}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load safely. A file holding pickled code (or anything but plain data) is refused, and so is a format
    version this code does not know."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    ckpt = safe_load(path, "ftpdet checkpoint")
    if not isinstance(ckpt, dict) or not {"model", "config", "categories"} <= set(ckpt):
        raise CheckpointError(f"{path}: not an ftpdet checkpoint (expected keys model, config, categories)")
    found = ckpt.get("version", FORMAT_VERSION)  # files from before the version key read as version 1
    if not isinstance(found, int) or not 1 <= found <= FORMAT_VERSION:
        by = f" (written by ftpdet {ckpt['ftpdet_version']})" if isinstance(ckpt.get("ftpdet_version"), str) else ""
        raise CheckpointError(f"{path}: checkpoint format version {found!r}{by}; this ftpdet ({version()}) reads "
                              f"versions 1 to {FORMAT_VERSION}: upgrade ftpdet to load it")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any], path: str | Path) -> Config:
    return config_from_dict(ckpt["config"], source=f"{path} (stored config)")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GFLDetector, Config, Categories]:
    """Rebuild a detector from a checkpoint: architecture from the stored config, then the weights (the weight
    average when the run kept one: what was evaluated)."""
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    cats = Categories.from_dict(ckpt["categories"])
    model_cfg = cfg.model.model_copy(update={"backbone_weights": None})  # weights come from the checkpoint
    model = build_detector(model_cfg, len(cats.ids))
    try:
        model.load_state_dict(ckpt["ema"] if "ema" in ckpt else ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored model config ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg, cats


def load_teacher(path: str | Path, student: GFLDetector, categories: Categories) -> tuple[GFLDetector, Config]:
    """A frozen teacher from a checkpoint (weights_only), with its stored config (its precision and memory format
    are how it runs). Refused with the reason when it cannot teach this student: other classes, another reg_max or
    other FPN strides. Other backbones and widths are fine."""
    teacher, cfg, cats = load_model(path)
    if cats.ids != categories.ids or cats.names != categories.names:
        raise CheckpointError(
            f"{path}: teacher classes {cats.names} (ids {cats.ids}) differ from the student's dataset "
            f"{categories.names} (ids {categories.ids})"
        )
    if cfg.model.reg_max != student.cfg.reg_max:
        raise CheckpointError(f"{path}: teacher reg_max {cfg.model.reg_max} differs from the student's {student.cfg.reg_max}")
    if list(cfg.model.strides) != list(student.cfg.strides):
        raise CheckpointError(f"{path}: teacher FPN strides {cfg.model.strides} differ from the student's {student.cfg.strides}")
    return freeze(teacher), cfg


