"""CTF, Classification Temperature-Free: class distillation for sigmoid scores with no temperature.

Dense detectors score C classes with independent sigmoids at mostly-background locations, so softmax
with a temperature is the wrong protocol (DESIGN.md section 4). Modes:
- `binary`: per class and location BCE(sigmoid(z_s), sigmoid(z_t)), focal-modulated by
  |sigmoid(z_t) - sigmoid(z_s)|^2 as in QFL.
- `standardized`: the same on logits z-scored per location over classes, so a teacher whose logits have
  another scale or offset (another architecture) still gives a well-posed target.
- `relation`: 1 - Pearson correlation across classes per location and across locations per class
  (DIST-style), invariant to positive affine changes of either side's logits.
- `dense` (`dense_ctf`): two terms. The published modulated binary term, BCE(sigmoid(z_s), sigmoid(z_t)) *
  |sigmoid(z_t) - sigmoid(z_s)| (CrossKD's and BCKD's form), at every location and normalised by the number of
  positives, so background scores are pushed down to the teacher's (the other modes are near silent there: offset-
  invariant, or weighted by the teacher's confidence ~0.01). And a relation term on probabilities: for centred
  probability vectors a (student) and b (teacher), 1 - 2<a, b> / (|a|^2 + |b|^2), across classes per location
  (weighted by the teacher's confidence) and across locations (each class centred with confidence weights, the
  classes pooled, so a class absent from the image weighs little). It is 0 only when a = b, invariant to an
  offset of either side and to a common scale of both, and its gradient is bounded by the teacher's spread, not
  the student's: a student with all scores equal (as at initialisation) gets a finite push, where Pearson's
  1 / |a| grows without bound.
Location weights (the teacher's confidence, chosen by PD) come from the caller; the first three modes return the
weighted sum normalised by the weight sum.
"""

from __future__ import annotations

import torch

from ftpdet.methods.functional import binary_kd, normalised, zscore

EPS = 1e-6
CTF_MODES = ("binary", "standardized", "relation", "dense")


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
    raise ValueError(f"unknown CTF mode {mode!r}: expected {', '.join(m for m in CTF_MODES if m != 'dense')} "
                     "(dense: dense_ctf)")


def dice_distance(a: torch.Tensor, b: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """1 - 2<a, b> / (|a|^2 + |b|^2) along dim, for already centred a, b: in [0, 2], 0 only when a = b."""
    return 1 - 2 * (a * b).sum(dim) / ((a * a).sum(dim) + (b * b).sum(dim) + 1e-12)


def dense_ctf(s_cls: torch.Tensor, t_cls: torch.Tensor, weight: torch.Tensor, num_pos: torch.Tensor,
              relation: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """s_cls, t_cls: (B, N, C) logits (teacher without gradient); weight: (B, N) teacher confidence; num_pos: the
    number of positives. Returns (binary term, relation term), raw scalars; the relation term is None with
    `relation=False` (not computed: FTPD's default weighs it 0)."""
    t_prob = t_cls.detach().sigmoid()
    binary = normalised(binary_kd(s_cls, t_prob, gamma=1.0).sum(), num_pos)
    if not relation:
        return binary, None
    s_prob = s_cls.sigmoid()
    # Across classes, per location.
    inter = dice_distance(s_prob - s_prob.mean(-1, keepdim=True), t_prob - t_prob.mean(-1, keepdim=True), -1)  # (B, N)
    inter = normalised((inter * weight).sum(), weight.sum())
    # Across locations, per image: each class centred over locations with confidence weights, then one distance
    # over all classes pooled, so a class with no object in the image (its probabilities flat) weighs little.
    w = (weight / weight.sum(1, keepdim=True).clamp_min(EPS)).detach()[..., None]  # (B, N, 1), sums to 1 per image
    centred = [(p - (p * w).sum(1, keepdim=True)) * w.sqrt() for p in (s_prob, t_prob)]
    intra = dice_distance(*centred, dim=(1, 2)).mean()  # (B,) -> mean
    return binary, inter + intra
