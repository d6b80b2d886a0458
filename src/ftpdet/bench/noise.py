"""`ftpdet bench eval-noise`: how much of a number is evaluation noise, i.e. which images happen to be in the
validation set. Each model's detections are scored on bootstrap resamplings of the validation images (the same
resamplings for every model); the spread of AP, and of the paired difference between two models, is what the
validation set's size leaves uncertain. The lab regime wants it small next to seed-to-seed noise (docs/sizing.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ftpdet.data.coco import CocoDetection
from ftpdet.data.transforms import Resize
from ftpdet.engine.evaluate import bootstrap_ap, coco_from_dict, coco_metrics, run_detector
from ftpdet.errors import ConfigError
from ftpdet.runtime import load_predictor


def eval_noise(checkpoints: list[str | Path], ann: str | Path, images: str | Path, replicates: int = 200,
               seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """AP of each checkpoint on the set, the bootstrap std of each, and with two, of their difference (A - B)."""
    if not 1 <= len(checkpoints) <= 2:
        raise ConfigError(f"eval-noise takes one or two checkpoints, got {len(checkpoints)}")
    detections, gt, cats0 = [], None, None
    for ckpt in checkpoints:
        model, cfg, cats = load_predictor(ckpt)
        if cats0 is not None and cats.ids != cats0.ids:
            raise ConfigError(f"{ckpt}: other classes than {checkpoints[0]}")
        cats0 = cats
        dataset = CocoDetection(ann, images, Resize.of(cfg.data), train=False, categories=cats)
        gt = dataset.coco_json
        detections.append(run_detector(model, dataset, cfg.eval, progress))
    coco = coco_from_dict(gt)
    full = [coco_metrics(coco, d)["AP"] for d in detections]
    boot = bootstrap_ap(gt, detections, replicates, seed)  # (replicates, models)
    result: dict[str, Any] = {
        "images": len(gt["images"]), "replicates": replicates,
        "models": [{"checkpoint": str(c), "AP": 100 * a, "bootstrap_std": float(100 * boot[:, i].std(ddof=1))}
                   for i, (c, a) in enumerate(zip(checkpoints, full))],
    }
    if len(checkpoints) == 2:
        diff = 100 * (boot[:, 0] - boot[:, 1])
        result["difference"] = {"AP": 100 * (full[0] - full[1]), "bootstrap_std": float(np.std(diff, ddof=1))}
    return result
