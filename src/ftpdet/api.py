"""The Python API, mirroring the CLI: ftpdet.train, ftpdet.distill, ftpdet.evaluate_checkpoint, ftpdet.predict,
ftpdet.export, ftpdet.convert_dataset, ftpdet.import_mmdet. Each function imports what it needs when called, so `import ftpdet` stays light."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftpdet.config import Config


def _as_config(config: Config | str | Path, overrides: list[str] | None) -> Config:
    from ftpdet.config import Config, apply_overrides, config_from_dict, load_config

    if isinstance(config, Config):
        if overrides:
            return config_from_dict(apply_overrides(config.model_dump(), overrides), source="overrides")
        return config
    return load_config(config, overrides)


def train(config: Config | str | Path, overrides: list[str] | None = None, **kwargs: Any):
    """Train from a Config, a YAML path or a builtin config name. kwargs: resume, overwrite, stop_after.
    A config that names a teacher (`distill.teacher`) distils from it."""
    from ftpdet.engine.train import train as _train

    return _train(_as_config(config, overrides), **kwargs)


def distill(
    config: Config | str | Path,
    teacher: str | Path | None = None,
    method: str | None = None,
    overrides: list[str] | None = None,
    unlabeled: str | Path | None = None,
    **kwargs: Any,
):
    """Distil a student (config) from a teacher checkpoint (default: the config's `distill.teacher`) with `method`
    (kd, ld, crosskd, bckd, pkd, ftpd, or a combination such as ftpd+pkd; default: the config's `distill.method`,
    ftpd unless set). `unlabeled`: a folder of images or a COCO JSON listing them, trained on beside the labeled
    ones (data.unlabeled). kwargs: resume, overwrite, stop_after, progress."""
    from ftpdet.engine.train import train as _train
    from ftpdet.errors import ConfigError

    cfg = _as_config(config, (overrides or []) + ([f"data.unlabeled={unlabeled}"] if unlabeled is not None else []))
    if teacher is None and cfg.distill.teacher is None and not kwargs.get("resume"):
        raise ConfigError("distill: no teacher; pass --teacher T.pt or set distill.teacher in the config")
    return _train(cfg, teacher=teacher, method=method, **kwargs)


def evaluate_checkpoint(checkpoint: str | Path, ann: str | Path, images: str | Path) -> tuple[dict[str, float], list]:
    """COCO metrics and detections (COCO results format) of a checkpoint (.pt) or an exported model (.onnx,
    run by ONNX Runtime) on a COCO-format set."""
    from ftpdet.data.coco import CocoDetection
    from ftpdet.engine.evaluate import evaluate
    from ftpdet.runtime import load_predictor

    from ftpdet.data.transforms import Resize

    model, cfg, cats = load_predictor(checkpoint)
    dataset = CocoDetection(ann, images, Resize.of(cfg.data), train=False, categories=cats)
    return evaluate(model, dataset, cfg.eval)


def export(checkpoint: str | Path, out: str | Path, image_size: int | None = None, dynamic_batch: bool = False,
           nms: bool = False) -> Path:
    """The checkpoint's student as an ONNX inference graph (see ftpdet.onnx_export)."""
    from ftpdet.onnx_export import export_onnx

    return export_onnx(checkpoint, out, image_size=image_size, dynamic_batch=dynamic_batch, nms=nms)


def predict(checkpoint: str | Path, images: list[str | Path], out: str | Path, score_thr: float = 0.3) -> list[Path]:
    """Draw detections above score_thr on each image; returns the written PNG paths. checkpoint: .pt or .onnx."""
    from ftpdet.engine.predict import predict_files
    from ftpdet.runtime import load_predictor

    model, cfg, cats = load_predictor(checkpoint)
    eval_cfg = cfg.eval.model_copy(update={"score_thr": score_thr})
    from ftpdet.data.transforms import Resize

    return predict_files(model, [Path(p) for p in images], Path(out), Resize.of(cfg.data), eval_cfg, cats.names)


def convert_dataset(src: str | Path, out: str | Path, source: str, to: str = "coco") -> dict[str, dict[str, int]]:
    """`ftpdet data convert`: a YOLO or VOC dataset to the COCO layout, or (source "coco") a COCO one to YOLO or
    VOC; returns {split: {images, boxes, crowd}}."""
    from ftpdet.data.convert import convert

    return convert(source, src, out, to)


def import_mmdet(checkpoint: str | Path, out: str | Path, config: str | None = None, ann: str | Path | None = None,
                 overrides: list[str] | None = None) -> dict[str, Any]:
    """`ftpdet import mmdet`: an mmdetection GFL checkpoint written as an ftpdet checkpoint (a teacher)."""
    from ftpdet.import_mmdet import import_mmdet as _import

    return _import(checkpoint, out, config=config, ann=ann, overrides=overrides)
