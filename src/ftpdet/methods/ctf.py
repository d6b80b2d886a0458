"""CTF, Classification Temperature-Free: class distillation for sigmoid scores with no temperature.

Dense detectors score C classes with independent sigmoids at mostly-background locations, so softmax
with a temperature is the wrong protocol (DESIGN.md section 4). Modes:
- `binary`: per class and location BCE(sigmoid(z_s), sigmoid(z_t)), focal-modulated by
  |sigmoid(z_t) - sigmoid(z_s)|^2 as in QFL.
- `standardized`: the same on logits z-scored per location over classes, so a teacher whose logits have
  another scale or offset (another architecture) still gives a well-posed target.
- `relation`: 1 - Pearson correlation across classes per location and across locations per class
  (DIST-style), invariant to positive affine changes of either side's logits.
Location weights (the teacher's confidence, chosen by PD) come from the caller; every mode returns the
weighted sum normalised by the weight sum.
"""

from __future__ import annotations

import torch

from ftpdet.methods.functional import binary_kd, normalised, zscore

EPS = 1e-6


def pearson_distance(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """1 - Pearson correlation of a and b along dim."""
    a = a - a.mean(dim, keepdim=True)
    b = b - b.mean(dim, keepdim=True)
    return 1 - (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + EPS)


def ctf_loss(s_cls: torch.Tensor, t_cls: torch.Tensor, mode: str, weight: torch.Tensor) -> torch.Tensor:
    """s_cls, t_cls: (B, N, C) logits (teacher without gradient); weight: (B, N). Returns a scalar."""
    t_cls = t_cls.detach()
    if mode in ("binary", "standardized"):
        if mode == "standardized":
            s_cls, t_cls = zscore(s_cls, -1, EPS), zscore(t_cls, -1, EPS)
        per_loc = binary_kd(s_cls, t_cls.sigmoid(), gamma=2.0).sum(-1)  # (B, N)
        return normalised((per_loc * weight).sum(), weight.sum())
    if mode == "relation":
        inter = pearson_distance(s_cls, t_cls, dim=-1)  # (B, N): across classes, per location
        intra = pearson_distance(s_cls, t_cls, dim=1)  # (B, C): across locations, per class
        return normalised((inter * weight).sum(), weight.sum()) + intra.mean()
    raise ValueError(f"unknown CTF mode {mode!r}: expected binary, standardized or relation")
