"""`ftpdet predict`: detections drawn on images, for a person to look at."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from torchvision.ops import clip_boxes_to_image

from ftpdet.data.coco import decode_image
from ftpdet.data.transforms import Resize, build_transforms, make_sample
from ftpdet.errors import DatasetError
from ftpdet.files import ensure_writable
from ftpdet.predictor import Predictor
from ftpdet.sections import EvalConfig

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


@torch.no_grad()
def predict_image(model: Predictor, path: Path, image_size: int | Resize, cfg: EvalConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Original image (3, H, W) uint8 and its detections, boxes xyxy in original pixels."""
    resize = image_size if isinstance(image_size, Resize) else Resize(image_size)
    image = decode_image(path)
    h, w = image.shape[-2:]
    sample = build_transforms(resize, train=False)(
        make_sample(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    )
    det = model.predict(sample["image"].as_subclass(torch.Tensor)[None].to(model.device), cfg)[0]
    boxes = clip_boxes_to_image(det["boxes"].cpu() / resize.scale(h, w), (h, w))
    return image, {"boxes": boxes, "scores": det["scores"].cpu(), "labels": det["labels"].cpu()}


def draw_detections(image: torch.Tensor, det: dict[str, torch.Tensor], class_names: list[str], upscale: int = 1) -> Image.Image:
    """Boxes with 'class score' labels; small images are upscaled first so the text is legible."""
    if upscale > 1:
        image = torch.nn.functional.interpolate(image[None].float(), scale_factor=upscale, mode="nearest")[0].byte()
    if len(det["boxes"]) == 0:
        return Image.fromarray(image.permute(1, 2, 0).numpy())
    labels = [f"{class_names[int(c)]} {s:.2f}" for c, s in zip(det["labels"], det["scores"].tolist())]
    colors = [_PALETTE[int(c) % len(_PALETTE)] for c in det["labels"]]
    drawn = draw_bounding_boxes(image, det["boxes"] * upscale, labels=labels, colors=colors, width=2)
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())


def predict_files(model: Predictor, paths: list[Path], out_dir: Path, image_size: int | Resize, cfg: EvalConfig, class_names: list[str]) -> list[Path]:
    ensure_writable(out_dir)
    written = []
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"{path}: image file not found")
        image, det = predict_image(model, path, image_size, cfg)
        upscale = max(1, 384 // max(image.shape[-2:]))
        target = out_dir / f"{path.stem}_pred.png"
        draw_detections(image, det, class_names, upscale).save(target)
        written.append(target)
    return written
