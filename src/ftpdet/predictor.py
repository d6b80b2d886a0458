"""The Predictor protocol: what `ftpdet eval`, `ftpdet predict` and the demo need of a model.

Both a `.pt` detector (models.detector.GFLDetector) and an exported `.onnx` file run by ONNX Runtime
(runtime.OnnxPredictor) satisfy it, so evaluation and drawing treat a deployed artefact exactly like a
checkpoint. `runtime.load_predictor(path)` gives either from a file.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ftpdet.sections import EvalConfig


@runtime_checkable
class Predictor(Protocol):
    @property
    def device(self) -> torch.device:
        """Where input images go."""
        ...

    def predict(self, images: torch.Tensor, cfg: EvalConfig) -> list[dict[str, torch.Tensor]]:
        """images (B, 3, S, S) uint8 RGB, letterboxed to S -> per image `boxes` (K, 4) xyxy in input pixels,
        `scores` (K,), `labels` (K,) contiguous class indices; score threshold, NMS and max_dets from `cfg`."""
        ...
