"""The teacher's detections as boxes on unlabeled images: its inference output (decode -> score threshold -> class-wise
NMS, models/detector.postprocess) at `distill.unlabeled_score_thr`.

They are the hard labels of the `pseudo` control (semi-supervised detection's standard use of unlabeled images), and
what stands in for ground truth where a method needs positives, regions or a normaliser on an image without labels
(ATSS assigns them exactly as it assigns labels: models/criterion.build_targets).
"""

from __future__ import annotations

import torch

from ftpdet.models.detector import GFLDetector, postprocess
from ftpdet.sections import EvalConfig


@torch.no_grad()
def teacher_boxes(teacher: GFLDetector, t_out: dict[str, list], index: list[int], image_hw: tuple[int, int],
                  score_thr: float, eval_cfg: EvalConfig = EvalConfig()) -> list[dict[str, torch.Tensor]]:
    """For the images `index` of the teacher's outputs `t_out` (its forward on the batch): boxes (K, 4) xyxy in input
    pixels, labels (K,) and scores (K,), the teacher's detections scoring above `score_thr` after NMS (the NMS IoU,
    pre-NMS top-k and per-image cap of `eval_cfg`, inference's)."""
    sub = {key: [level[index] for level in t_out[key]] for key in ("cls_logits", "edge_logits")}
    scores, boxes = teacher.decode(sub)  # (K, N, C), (K, N, 4)
    cfg = eval_cfg.model_copy(update={"score_thr": score_thr})
    return [postprocess(s, b, cfg, image_hw) for s, b in zip(scores, boxes)]
