"""What both built-in datasets (synth.py's shapes, pictograms.py) share: the object record, the supersampling
factor, and the rule for placing an object over earlier ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUPERSAMPLE = 4  # objects are drawn 4x larger and box-filtered down: anti-aliased edges


@dataclass
class SynthObject:
    label: int
    box: tuple[float, float, float, float]  # xyxy pixels, tight around the unblurred object
    area: float  # unblurred object area in pixels (COCO's size buckets use it)


class Occupancy:
    """Which object covers each pixel. Partial occlusion is allowed, but no earlier object may lose more than half
    its pixels, and an object needs at least 8 solid (coverage > 0.5) pixels."""

    def __init__(self, size: int) -> None:
        self.owner = np.full((size, size), -1, np.int32)
        self.areas: list[float] = []

    def fits(self, cov: np.ndarray, x0: int, y0: int) -> bool:
        h, w = cov.shape
        solid = cov > 0.5
        if solid.sum() < 8:
            return False
        region = self.owner[y0 : y0 + h, x0 : x0 + w]
        covered = np.bincount(region[solid & (region >= 0)], minlength=len(self.areas))
        visible = np.bincount(self.owner[self.owner >= 0], minlength=len(self.areas)) - covered
        return not (len(self.areas) and np.any(visible < 0.5 * np.asarray(self.areas)))

    def add(self, label: int, cov: np.ndarray, x0: int, y0: int) -> SynthObject:
        """Place an object that `fits`: its pixels become its own, and its record has the tight box of its solid
        pixels."""
        h, w = cov.shape
        solid = cov > 0.5
        ys, xs = np.nonzero(solid)
        box = (float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1))
        self.owner[y0 : y0 + h, x0 : x0 + w][solid] = len(self.areas)
        self.areas.append(float(solid.sum()))
        return SynthObject(label, box, float(cov.sum()))
