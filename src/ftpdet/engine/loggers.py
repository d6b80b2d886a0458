"""Where a run's numbers go: metrics.jsonl always, TensorBoard when `train.loggers` lists it.

metrics.jsonl is the run's record (curves.png and the benchmark read it; a resume trims it to the checkpoint's
step). TensorBoard gets the same numbers under tags a user can browse: `loss/<term>` (weighted, as the step sums
them), `loss_raw/<term>` (before the weight), `loss/total`, `lr`, `eval/<metric>` (COCO AP in %), and at every
evaluation `predictions/<i>`: the first validation images with the model's detections drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ftpdet.data.coco import CocoDetection, decode_image
from ftpdet.errors import ConfigError

PREVIEW_IMAGES = 4  # validation images drawn with their detections at each evaluation
PREVIEW_SCORE = 0.3  # detections below this score are left off the drawing (evaluation keeps them all)


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


def scalar_tags(record: dict[str, Any]) -> dict[str, float]:
    """A training record of metrics.jsonl -> {TensorBoard tag: value}."""
    tags = {}
    for key, value in record.items():
        if key in ("step", "epoch"):
            continue
        if key == "lr":
            tags["lr"] = value
        elif key == "loss":
            tags["loss/total"] = value
        elif key.endswith("_raw"):  # loss_qfl_raw -> loss_raw/qfl, distill_kd_raw -> loss_raw/distill_kd
            tags[f"loss_raw/{key.removesuffix('_raw').removeprefix('loss_')}"] = value
        else:
            tags[f"loss/{key.removeprefix('loss_')}"] = value
    return tags


def preview(dataset: CocoDetection, detections: list[dict[str, Any]], count: int = PREVIEW_IMAGES) -> list[torch.Tensor]:
    """(3, H, W) uint8 drawings of the first `count` validation images with their detections (COCO results,
    original pixels) at score >= PREVIEW_SCORE, upscaled so that small images stay legible."""
    from ftpdet.engine.predict import draw_detections  # only for TensorBoard's pictures: no number depends on it

    label_of = dataset.categories.id_to_label
    drawings = []
    for rec in dataset.records[:count]:
        dets = [d for d in detections if d["image_id"] == rec.image_id and d["score"] >= PREVIEW_SCORE]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in dets)],
                             dtype=torch.float32).reshape(-1, 4)  # (N, 4) xyxy
        det = {"boxes": boxes, "scores": torch.tensor([d["score"] for d in dets]),
               "labels": torch.tensor([label_of[d["category_id"]] for d in dets], dtype=torch.long)}
        image = decode_image(rec.path)
        upscale = max(1, 384 // max(image.shape[-2:]))
        drawn = draw_detections(image, det, dataset.categories.names, upscale)
        drawings.append(torch.from_numpy(np.array(drawn)).permute(2, 0, 1))
    return drawings


class TensorBoardLog:
    """Event files under OUT/tensorboard (`tensorboard --logdir OUT`). `purge_step`: events from that step on are
    dropped (TensorBoard's own mechanism), so a resumed run shows one curve."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.loggers: tensorboard needs the tensorboard package (pip install tensorboard)") from None
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def train(self, record: dict[str, Any]) -> None:
        for tag, value in scalar_tags(record).items():
            self.writer.add_scalar(tag, value, record["step"])

    def eval(self, step: int, metrics: dict[str, float], drawings: list[torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"eval/{key}", 100 * value, step)
        for i, image in enumerate(drawings):
            self.writer.add_image(f"predictions/{i}", image, step)  # (3, H, W) uint8
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunLog:
    """The run's loggers behind one interface: `train` every log_every steps, `eval` at every evaluation."""

    def __init__(self, out: Path, loggers: list[str], keep_from_step: int | None, val_ds: CocoDetection) -> None:
        self.jsonl = MetricsLog(out / "metrics.jsonl", keep_from_step)
        self.tb = None
        if "tensorboard" in loggers:
            if keep_from_step is None:  # a new run in this directory: an earlier run's events are not its history
                for old in (out / "tensorboard").glob("events.out.tfevents.*"):
                    old.unlink()
            # on resume, purge what was logged after the checkpoint's step (it will be redone), as metrics.jsonl
            self.tb = TensorBoardLog(out / "tensorboard", None if keep_from_step is None else keep_from_step + 1)
        self.val_ds = val_ds

    def train(self, record: dict[str, Any]) -> None:
        self.jsonl.write(record)
        if self.tb is not None:
            self.tb.train(record)

    def eval(self, step: int, epoch: int, metrics: dict[str, float], train_seconds: float,
             detections: list[dict[str, Any]]) -> None:
        self.jsonl.write({"step": step, "epoch": epoch, "eval": metrics, "train_seconds": train_seconds})
        if self.tb is not None:
            self.tb.eval(step, metrics, preview(self.val_ds, detections))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
