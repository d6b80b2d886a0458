"""`ftpdet export`: a checkpoint's student as an ONNX inference graph, and running that file with ONNX Runtime.

The graph takes images (B, 3, S, S) as uint8 RGB in [0, 255], letterboxed to S (scaled so the longer
side is S, padded right and bottom with 114): normalisation is inside the graph. Outputs:
- `cls_logits` (B, N, C) and `edge_logits` (B, N, 4 * (reg_max + 1)): the raw head outputs, FPN levels
  concatenated (N locations), for parity checks against PyTorch;
- `scores` (B, N, C) sigmoid class-IoU scores and `boxes` (B, N, 4) xyxy in input pixels: decoded;
- with `nms=True`, also `selected` (K, 3) rows of (image, class, location) kept by ONNX's
  NonMaxSuppression (class-wise, score and IoU thresholds from the checkpoint's eval config).
The model's metadata holds the class names and ids, the input size and preprocessing, and the whole
resolved config, so the file alone is enough to run, evaluate and draw.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftpdet.config import Config, EvalConfig, config_from_dict
from ftpdet.data.coco import Categories
from ftpdet.errors import CheckpointError, FtpdetError
from ftpdet.models.detector import flatten_levels, postprocess

OUTPUTS = ["cls_logits", "edge_logits", "scores", "boxes"]
PREPROCESSING = ("uint8 RGB (B, 3, S, S) in [0, 255]; letterbox: scale the longer side to S, pad right and bottom "
                 "with 114; mean/std normalisation is inside the graph")


class InferenceGraph(nn.Module):
    """The detector's inference path as one module: images -> raw head outputs and decoded scores, boxes."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.detector(images)
        scores, boxes = self.detector.decode(out)
        return flatten_levels(out["cls_logits"]), flatten_levels(out["edge_logits"]), scores, boxes


def _append_nms(model, eval_cfg: EvalConfig):
    """Add ONNX NonMaxSuppression over (boxes, scores): class-wise, at most max_dets per class and image."""
    from onnx import TensorProto, helper

    g = model.graph
    g.node.extend([
        helper.make_node("Transpose", ["scores"], ["scores_bcn"], perm=[0, 2, 1]),
        helper.make_node("NonMaxSuppression", ["boxes", "scores_bcn", "nms_max", "nms_iou", "nms_score"], ["selected"],
                         center_point_box=0),
    ])
    g.initializer.extend([
        helper.make_tensor("nms_max", TensorProto.INT64, [1], [eval_cfg.max_dets]),
        helper.make_tensor("nms_iou", TensorProto.FLOAT, [1], [eval_cfg.nms_iou]),
        helper.make_tensor("nms_score", TensorProto.FLOAT, [1], [eval_cfg.score_thr]),
    ])
    g.output.append(helper.make_tensor_value_info("selected", TensorProto.INT64, ["K", 3]))
    return model


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    image_size: int | None = None,
    dynamic_batch: bool = False,
    nms: bool = False,
    opset: int = 18,
) -> Path:
    """Write the checkpoint's detector as ONNX; returns the path. The checkpoint is read with weights_only."""
    from ftpdet.engine.checkpoint import load_model

    detector, cfg, cats = load_model(checkpoint)
    return export_model(detector, cfg, cats, out, image_size, dynamic_batch, nms, opset, source=Path(checkpoint).name)


def export_model(
    detector: nn.Module,
    cfg: Config,
    cats: Categories,
    out: str | Path,
    image_size: int | None = None,
    dynamic_batch: bool = False,
    nms: bool = False,
    opset: int = 18,
    source: str = "",
) -> Path:
    """export_onnx for a detector in memory (with the config and categories it was built for)."""
    import onnx

    from ftpdet import __version__
    from ftpdet.engine.checkpoint import ensure_writable

    detector = detector.eval()
    size = image_size or cfg.data.image_size
    if size % max(cfg.model.strides) != 0:
        raise FtpdetError(f"--image-size {size}: must be a multiple of the largest stride {max(cfg.model.strides)}")
    out = Path(out)
    if out.suffix != ".onnx":
        raise FtpdetError(f"{out}: the output file must end in .onnx")
    ensure_writable(out.parent)
    example = torch.zeros(2 if dynamic_batch else 1, 3, size, size, dtype=torch.uint8)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(InferenceGraph(detector), (example,), dynamo=True, input_names=["images"],
                                    output_names=OUTPUTS, dynamic_shapes=dynamic, opset_version=opset, verbose=False)
    model = program.model_proto
    if nms:
        model = _append_nms(model, cfg.eval)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": size})})
    meta = {
        "ftpdet_version": __version__,
        "config": json.dumps(cfg.model_dump()),
        "categories": json.dumps(cats.to_dict()),
        "class_names": json.dumps(cats.names),
        "image_size": str(size),
        "preprocessing": PREPROCESSING,
        "nms_in_graph": str(nms).lower(),
        "source_checkpoint": source,
    }
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    tmp = out.with_name(f".{out.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


class OnnxDetector:
    """An exported file run by ONNX Runtime, with GFLDetector's `predict` contract, so `ftpdet eval` and
    `ftpdet predict` treat a deployed artefact exactly like a checkpoint."""

    training = False

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

    def eval(self) -> OnnxDetector:
        return self

    def train(self, mode: bool = True) -> OnnxDetector:
        return self

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
        b = boxes[i, loc[order]]
        h, w = int(image_hw[0]), int(image_hw[1])
        b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], 1)
        return {"boxes": b, "scores": s[order], "labels": labels[order]}


def load_detector(path: str | Path) -> tuple[Any, Config, Categories]:
    """A checkpoint (.pt) or an exported model (.onnx): (detector with .predict, config, categories)."""
    path = Path(path)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX model not found")
        det = OnnxDetector(path)
        return det, det.config, det.categories
    from ftpdet.engine.checkpoint import load_model

    return load_model(path)
