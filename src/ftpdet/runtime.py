"""Loading a deployable model as a Predictor (ftpdet.predictor): a `.pt` checkpoint through PyTorch, or an
exported `.onnx` file through ONNX Runtime (`ftpdet export` writes it; its metadata carries the config and
classes, so the file alone is enough to run, evaluate and draw)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import clip_boxes_to_image

from ftpdet.checkpoint import load_model
from ftpdet.config import Config, config_from_dict
from ftpdet.data.coco import Categories
from ftpdet.errors import CheckpointError
from ftpdet.models.detector import postprocess
from ftpdet.predictor import Predictor
from ftpdet.sections import EvalConfig


class OnnxPredictor:
    """An exported file run by ONNX Runtime (on the CPU), satisfying the Predictor protocol."""

    device = torch.device("cpu")

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - any failure here means "not a usable ONNX file"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{self.path}: not a loadable ONNX model ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "config" not in meta or "categories" not in meta:
            raise CheckpointError(f"{self.path}: not an ftpdet export (no config/categories in its metadata)")
        self.config: Config = config_from_dict(json.loads(meta["config"]), source=f"{self.path} (metadata)")
        self.categories = Categories.from_dict(json.loads(meta["categories"]))
        self.nms_in_graph = meta.get("nms_in_graph") == "true"
        self.batch_dim = self.session.get_inputs()[0].shape[0]

    def run(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """Raw outputs by name for uint8 images (B, 3, S, S); a fixed-batch graph is run image by image."""
        x = images.to(torch.uint8).cpu().numpy()
        names = [o.name for o in self.session.get_outputs()]
        if isinstance(self.batch_dim, int) and self.batch_dim != x.shape[0]:
            parts = [self.session.run(None, {"images": x[i : i + 1]}) for i in range(x.shape[0])]
            out = {n: np.concatenate([p[j] for p in parts]) for j, n in enumerate(names) if n != "selected"}
            if "selected" in names:
                j = names.index("selected")
                out["selected"] = np.concatenate([np.c_[np.full(len(p[j]), i), p[j][:, 1:]] for i, p in enumerate(parts)])
            return out
        return dict(zip(names, self.session.run(None, {"images": x})))

    def predict(self, images: torch.Tensor, cfg: EvalConfig) -> list[dict[str, torch.Tensor]]:
        out = self.run(images)
        scores, boxes = torch.from_numpy(out["scores"]), torch.from_numpy(out["boxes"])
        if "selected" not in out:
            return [postprocess(s, b, cfg, images.shape[-2:]) for s, b in zip(scores, boxes)]
        return [self._from_selected(out["selected"], scores, boxes, i, cfg, images.shape[-2:]) for i in range(len(scores))]

    @staticmethod
    def _from_selected(sel: np.ndarray, scores, boxes, i: int, cfg: EvalConfig, image_hw) -> dict[str, torch.Tensor]:
        """In-graph NMS kept (image, class, location) rows; keep this image's best max_dets, boxes clipped."""
        rows = torch.from_numpy(sel[sel[:, 0] == i])
        labels, loc = rows[:, 1], rows[:, 2]
        s = scores[i, loc, labels]
        order = s.argsort(descending=True)[: cfg.max_dets]
        b = clip_boxes_to_image(boxes[i, loc[order]], (int(image_hw[0]), int(image_hw[1])))
        return {"boxes": b, "scores": s[order], "labels": labels[order]}


def load_predictor(path: str | Path) -> tuple[Predictor, Config, Categories]:
    """A checkpoint (.pt) or an exported model (.onnx): (predictor, config, categories)."""
    path = Path(path)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        predictor = OnnxPredictor(path)
        return predictor, predictor.config, predictor.categories
    return load_model(path)
