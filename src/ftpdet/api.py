"""The Python API, mirroring the CLI: ftpdet.train, ftpdet.distill, ftpdet.evaluate_checkpoint, ftpdet.predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftpdet.config import Config, load_config


def _as_config(config: Config | str | Path, overrides: list[str] | None) -> Config:
    if isinstance(config, Config):
        if overrides:
            from ftpdet.config import apply_overrides, config_from_dict

            return config_from_dict(apply_overrides(config.model_dump(), overrides), source="overrides")
        return config
    return load_config(config, overrides)


def train(config: Config | str | Path, overrides: list[str] | None = None, **kwargs: Any):
    """Train from a Config, a YAML path or a builtin config name. kwargs: resume, overwrite, stop_after."""
    from ftpdet.engine.train import train as _train

    return _train(_as_config(config, overrides), **kwargs)


def distill(
    config: Config | str | Path,
    teacher: str | Path,
    method: str = "ftpd",
    overrides: list[str] | None = None,
    **kwargs: Any,
):
    """Distil a student (config) from a teacher checkpoint with `method` (kd, ld, crosskd, bckd, pkd, ftpd,
    or a combination such as ftpd+pkd). kwargs: resume, overwrite, stop_after, progress."""
    from ftpdet.engine.train import train as _train

    return _train(_as_config(config, overrides), teacher=teacher, method=method, **kwargs)


def evaluate_checkpoint(checkpoint: str | Path, ann: str | Path, images: str | Path) -> tuple[dict[str, float], list]:
    """COCO metrics and detections (COCO results format) of a checkpoint (.pt) or an exported model (.onnx,
    run by ONNX Runtime) on a COCO-format set."""
    from ftpdet.data.coco import CocoDetection
    from ftpdet.engine.evaluate import evaluate
    from ftpdet.export import load_detector

    model, cfg, cats = load_detector(checkpoint)
    dataset = CocoDetection(ann, images, cfg.data.image_size, train=False, categories=cats)
    return evaluate(model, dataset, cfg.eval)


def export(checkpoint: str | Path, out: str | Path, image_size: int | None = None, dynamic_batch: bool = False,
           nms: bool = False) -> Path:
    """The checkpoint's student as an ONNX inference graph (see ftpdet.export)."""
    from ftpdet.export import export_onnx

    return export_onnx(checkpoint, out, image_size=image_size, dynamic_batch=dynamic_batch, nms=nms)


def predict(checkpoint: str | Path, images: list[str | Path], out: str | Path, score_thr: float = 0.3) -> list[Path]:
    """Draw detections above score_thr on each image; returns the written PNG paths. checkpoint: .pt or .onnx."""
    from ftpdet.engine.predict import predict_files
    from ftpdet.export import load_detector

    model, cfg, cats = load_detector(checkpoint)
    eval_cfg = cfg.eval.model_copy(update={"score_thr": score_thr})
    return predict_files(model, [Path(p) for p in images], Path(out), cfg.data.image_size, eval_cfg, cats.names)
