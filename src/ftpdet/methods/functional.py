"""Pure loss pieces shared by the distillation methods: per-element values, the caller normalises."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ftpdet.distributed import normaliser


def edge_kl(s_logits: torch.Tensor, t_logits: torch.Tensor, tau: torch.Tensor | float = 1.0) -> torch.Tensor:
    """KL(softmax(t / tau) || softmax(s / tau)) summed over bins, times tau^2 (Hinton's gradient scale).

    s_logits, t_logits: (M, n + 1) edge-bin logits; tau: a number or (M, 1). Neither the target nor tau
    is differentiated. Returns (M,).
    """
    if isinstance(tau, torch.Tensor):
        tau = tau.detach()
    t = F.softmax(t_logits.detach() / tau, dim=-1)
    kl = (t * (torch.log(t.clamp_min(1e-12)) - F.log_softmax(s_logits / tau, dim=-1))).sum(-1)
    return kl * (tau * tau if isinstance(tau, float) else (tau * tau).squeeze(-1))


def binary_kd(s_logits: torch.Tensor, t_prob: torch.Tensor, gamma: float = 0.0) -> torch.Tensor:
    """Per-element binary distillation to a soft target t in [0, 1].

    gamma > 0: the published modulated form BCE(sigmoid(s), t) * |t - sigmoid(s)|^gamma with the modulator
    differentiated too, as CrossKD's `kd_quality_focal_loss` and BCKD's `novel_kd_loss` compute it (QFL's form
    with a soft target); it is 0 where the student matches the teacher.
    gamma = 0: the binary KL, BCE(sigmoid(s), t) - H(t): BCE's gradient exactly (H(t) is a constant), but 0 when
    the student matches the teacher, so a logged value reads as "distance to the teacher". (Subtracting H(t)
    under a modulator, as this function once did, changes the gradient: 2-8x weaker than the published term.)
    """
    t_prob = t_prob.detach().clamp(0.0, 1.0)
    bce = F.binary_cross_entropy_with_logits(s_logits, t_prob, reduction="none")
    if gamma == 0:
        entropy = F.binary_cross_entropy(t_prob, t_prob, reduction="none")
        return (bce - entropy).clamp_min(0.0)
    return bce * (t_prob - s_logits.sigmoid()).abs().pow(gamma)


def split_edges(edges: torch.Tensor) -> torch.Tensor:
    """(..., 4 * (n + 1)) -> (..., 4, n + 1)."""
    return edges.reshape(*edges.shape[:-1], 4, edges.shape[-1] // 4)


def normalised(total: torch.Tensor, weight_sum: torch.Tensor) -> torch.Tensor:
    """Divide by a weight sum as GFL normalises its box losses: at least 1, and under DDP the global sum
    (ftpdet.distributed.normaliser), so two processes give one process's loss. Every rank must call it."""
    return total / normaliser(weight_sum.detach())


def zscore(x: torch.Tensor, dim: int | tuple[int, ...], eps: float = 1e-6, std: torch.Tensor | None = None) -> torch.Tensor:
    """(x - mean) / (std + eps) along `dim` (a dim or a tuple of dims), the one z-score of the package: CTF's
    per-location class logits, PKD's and CrossKD's per-channel features. `std` replaces the (std + eps) divisor,
    e.g. a detached temperature (DLT `std`), so only the centring is differentiated through the statistics."""
    centred = x - x.mean(dim, keepdim=True)
    return centred / (x.std(dim, keepdim=True) + eps if std is None else std)
