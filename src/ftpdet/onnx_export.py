"""`ftpdet export`: a checkpoint's student as an ONNX inference graph (ftpdet.runtime runs the file).

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

import torch
from torch import nn

from ftpdet.checkpoint import load_model
from ftpdet.config import Config
from ftpdet.data.coco import Categories
from ftpdet.errors import FtpdetError
from ftpdet.files import ensure_writable
from ftpdet.models.detector import flatten_levels
from ftpdet.provenance import machine_description, version
from ftpdet.sections import EvalConfig

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
    # The graph takes size x size images: whatever the training resize was, the exported model is fed letterboxed
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": size, "resize": "letterbox",
                                                                      "multiscale": None})})
    meta = {
        "ftpdet_version": version(),
        "exported_on": machine_description(),  # CPU model, ISA, native bf16, threads, torch (or the GPU)
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
