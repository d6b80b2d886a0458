"""`ftpdet import mmdet CKPT --out teacher.pt`: an mmdetection GFL checkpoint as an ftpdet teacher.

mmdetection's GFL (ResNet -> FPN P3-P7 -> GFLHead) and ftpdet's detector are the same network under other names:
- backbone.*                               -> backbone.body.*  (torchvision's ResNet names, which mmdet's follow)
- neck.lateral_convs.i.conv                -> fpn.fpn.inner_blocks.i.0        (C3..C5 laterals, start_level=1)
- neck.fpn_convs.i.conv, i < 3             -> fpn.fpn.layer_blocks.i.0
- neck.fpn_convs.3.conv / 4.conv           -> fpn.fpn.extra_blocks.p6 / p7    (add_extra_convs='on_output', no
                                              ReLU before P7: model.fpn_relu_before_p7 false)
- bbox_head.{cls,reg}_convs.i.conv / .gn   -> head.{cls,reg}_convs.i.0 / .1   (conv without bias + GroupNorm 32)
- bbox_head.gfl_cls / gfl_reg              -> head.cls_out / head.reg_out
- bbox_head.scales.l.scale                 -> head.scales[l]
The architecture is read from the tensors (ResNet depth, channels, convs per tower, reg_max, levels, classes); the
anchor scale is GFL's octave_base_scale 8. Classes: the checkpoint's meta (mmdet 2.x `CLASSES`, 3.x
`dataset_meta.classes`) names them in label order; `--ann` takes category ids from a COCO file (as mmdetection's
CocoDataset does, by name), and reorders the class outputs when that file sorts its ids in another order.
Deformable convolutions (the DCN variants) have no counterpart here and are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ftpdet.checkpoint import save_checkpoint
from ftpdet.config import load_config
from ftpdet.data.coco import Categories, categories_of, read_coco_json
from ftpdet.errors import CheckpointError
from ftpdet.files import safe_load
from ftpdet.models.detector import build_detector

GFL_ANCHOR_SCALE = 8.0  # mmdetection GFL: octave_base_scale=8, scales_per_octave=1
RESNET_DEPTHS = {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34/50", (3, 4, 23, 3): "resnet101"}


def read_mmdet(path: Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """(state_dict, class names or None) of an mmdetection checkpoint, read with weights_only=True."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    ckpt = safe_load(path, "mmdetection checkpoint")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict with state_dict, got {type(ckpt).__name__}")
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict) or not any(k.startswith("bbox_head.") for k in state):
        raise CheckpointError(f"{path}: not an mmdetection detector (no bbox_head.* tensors)")
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    classes = meta.get("CLASSES") or (meta.get("dataset_meta") or {}).get("classes")
    return state, [str(c) for c in classes] if classes else None


def infer_architecture(state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """ftpdet config overrides describing the mmdetection GFL model that `state` holds."""
    if any("conv_offset" in k for k in state):
        raise CheckpointError(f"{path}: deformable convolutions (DCN) have no ftpdet counterpart")
    if "bbox_head.gfl_cls.weight" not in state:
        raise CheckpointError(f"{path}: not a GFL head (no bbox_head.gfl_cls); ftpdet imports mmdetection's GFLHead")
    blocks = tuple(len({k.split(".")[2] for k in state if k.startswith(f"backbone.layer{i}.")}) for i in range(1, 5))
    depth = RESNET_DEPTHS.get(blocks)
    if depth is None:
        raise CheckpointError(f"{path}: backbone blocks per stage {blocks} are not a ResNet-18/34/50/101")
    if depth == "resnet34/50":
        depth = "resnet50" if "backbone.layer1.0.conv3.weight" in state else "resnet34"
    convs = len({k.split(".")[2] for k in state if k.startswith("bbox_head.cls_convs.")})
    levels = len({k.split(".")[2] for k in state if k.startswith("bbox_head.scales.")})
    reg_out = state["bbox_head.gfl_reg.weight"].shape[0]
    return [
        f"model.backbone={depth}",
        f"model.fpn_channels={state['neck.lateral_convs.0.conv.weight'].shape[0]}",
        f"model.head_channels={state['bbox_head.gfl_cls.weight'].shape[1]}",
        f"model.num_convs={convs}",
        f"model.reg_max={reg_out // 4 - 1}",
        f"model.strides={[8, 16, 32, 64, 128][:levels]}",
        f"model.anchor_scale={GFL_ANCHOR_SCALE}",
        "model.fpn_relu_before_p7=false",
    ]


def rename(key: str) -> str | None:
    """mmdetection GFL key -> ftpdet key (None: not part of the detector, e.g. a data preprocessor's buffers)."""
    rules = [
        (r"^backbone\.(.*)$", r"backbone.body.\1"),
        (r"^neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)$", r"fpn.fpn.inner_blocks.\1.0.\2"),
        (r"^neck\.fpn_convs\.([0-2])\.conv\.(weight|bias)$", r"fpn.fpn.layer_blocks.\1.0.\2"),
        (r"^neck\.fpn_convs\.3\.conv\.(weight|bias)$", r"fpn.fpn.extra_blocks.p6.\1"),
        (r"^neck\.fpn_convs\.4\.conv\.(weight|bias)$", r"fpn.fpn.extra_blocks.p7.\1"),
        (r"^bbox_head\.(cls|reg)_convs\.(\d+)\.conv\.weight$", r"head.\1_convs.\2.0.weight"),
        (r"^bbox_head\.(cls|reg)_convs\.(\d+)\.gn\.(weight|bias)$", r"head.\1_convs.\2.1.\3"),
        (r"^bbox_head\.gfl_cls\.(weight|bias)$", r"head.cls_out.\1"),
        (r"^bbox_head\.gfl_reg\.(weight|bias)$", r"head.reg_out.\1"),
    ]
    for pattern, target in rules:
        if re.match(pattern, key):
            return re.sub(pattern, target, key)
    return None


def convert_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path,
                  class_order: list[int] | None = None) -> dict[str, torch.Tensor]:
    """ftpdet's state_dict from mmdetection's; every ftpdet tensor must come from the file with its shape.
    `class_order[label]`: the mmdetection label whose class output becomes ftpdet's `label`."""
    out: dict[str, torch.Tensor] = {}
    scales = sorted((int(k.split(".")[2]), v) for k, v in state.items() if re.match(r"^bbox_head\.scales\.\d+\.scale$", k))
    if scales:
        out["head.scales"] = torch.stack([v.reshape(()) for _, v in scales]).float()
    unused = []
    for key, value in state.items():
        if key.startswith("bbox_head.scales."):
            continue
        new = rename(key)
        if new is None or new not in expected:
            unused.append(key)
            continue
        out[new] = value
    missing = [k for k in expected if k not in out and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tensors of the model are not in the file, e.g. '{missing[0]}'")
    if class_order is not None:
        out["head.cls_out.weight"] = out["head.cls_out.weight"][class_order]
        out["head.cls_out.bias"] = out["head.cls_out.bias"][class_order]
    foreign = [k for k in unused if not k.startswith("data_preprocessor.")]
    if foreign:
        raise CheckpointError(f"{path}: {len(foreign)} tensors have no place in a GFL model, e.g. '{foreign[0]}'")
    for key, value in out.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: '{key}' has shape {tuple(value.shape)}, the model {tuple(expected[key].shape)}")
    for key in expected:  # BatchNorm counters mmdetection may have dropped: they do not change a forward
        if key not in out:
            out[key] = expected[key]
    return out


def categories_for(names: list[str] | None, num_classes: int, ann: Path | None, path: Path) -> tuple[Categories, list[int] | None]:
    """ftpdet categories and the class reordering. Without --ann: ids 1..C in the checkpoint's label order."""
    if names is not None and len(names) != num_classes:
        raise CheckpointError(f"{path}: meta lists {len(names)} classes, the head predicts {num_classes}")
    if ann is None:
        return Categories(list(range(1, num_classes + 1)), names or [f"class_{i}" for i in range(num_classes)]), None
    cats = categories_of(read_coco_json(ann))
    if len(cats.ids) != num_classes:
        raise CheckpointError(f"{ann}: {len(cats.ids)} categories, the checkpoint's head predicts {num_classes}")
    if names is None:  # mmdetection without names: labels follow the file's categories in the order it lists them
        listed = [c["name"] for c in read_coco_json(ann)["categories"]]
        names = [str(n) for n in listed]
    unknown = [n for n in cats.names if n not in names]
    if unknown:
        raise CheckpointError(f"{ann}: categories {unknown} are not among the checkpoint's classes")
    return cats, [names.index(n) for n in cats.names]


def import_mmdet(ckpt: str | Path, out: str | Path, config: str | None = None, ann: str | Path | None = None,
                 overrides: list[str] | None = None) -> dict[str, Any]:
    """Write an ftpdet checkpoint holding the mmdetection GFL model in `ckpt`; returns a summary."""
    path = Path(ckpt)
    state, names = read_mmdet(path)
    arch = infer_architecture(state, path)
    cfg = load_config(config, [*([] if config else arch), *(overrides or [])])
    num_classes = state["bbox_head.gfl_cls.weight"].shape[0]
    cats, order = categories_for(names, num_classes, Path(ann) if ann else None, path)
    model = build_detector(cfg.model, num_classes)
    weights = convert_state(state, model.state_dict(), path, order)
    model.load_state_dict(weights)  # strict: every key present, none extra
    save_checkpoint({"model": model.state_dict(), "config": cfg.model_dump(), "categories": cats.to_dict(),
                     "imported_from": str(path)}, out)
    return {"out": str(out), "backbone": cfg.model.backbone, "classes": len(cats.ids),
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "reordered": order is not None
            and order != list(range(num_classes))}
