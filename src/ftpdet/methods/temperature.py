"""DLT, Dynamic Localization Temperature: a temperature per location and per edge, from the distributions.

No mode has a hand-set constant. Each returns tau >= its floor, finite for one-hot, constant and random
logits, computed without gradient (DESIGN.md section 4):
- `entropy`: tau = exp(H(p_t)), the teacher edge's perplexity, in [1, n + 1]. A confident edge (its peak
  position is the knowledge) is distilled sharp, an ambiguous one (its shape is the knowledge) softly.
- `quality`: tau = 1 / q with q the teacher's localisation quality at that location, floored at 1/(n + 1),
  so tau is in [1, n + 1]; the caller also weights the location by q.
- `std`: logit standardisation (Sun et al., CVPR 2024) without a base temperature: each side is z-scored
  over its bins, i.e. divided by its own std; the KL is scaled by tau_t * tau_s.
- `sharpness`: each side its own temperature from its own distribution, tau = ((n + 1) / perplexity)^(1/3) in
  [1, (n + 1)^(1/3)] (2.57 for 17 bins): a sharp edge is softened to show the shape around its peak, a flat one
  is left as it is. The KL is scaled by tau_t * tau_s. Unlike `std`, whose temperature scales with the logits
  (so a student with its teacher's logits times k > 0 costs nothing, and its decoded box moves), z -> z / tau(z)
  is strictly increasing along k * z, so the only zero of the loss is the teacher's own distribution: the edge
  and the box it decodes to are transferred. The exponent 1/3 is the largest of 1/2, 1/3, 1/4 that keeps that
  true (tests/test_ftpd.py checks it on peaked and random edges); it is fixed, never set per dataset.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftpdet.methods.functional import edge_kl, zscore

EPS = 1e-7
DLT_MODES = ("std", "entropy", "quality", "sharpness")
SHARPNESS_EXPONENT = 1 / 3  # see `sharpness` above


@torch.no_grad()
def dlt_temperature(t_logits: torch.Tensor, mode: str, quality: torch.Tensor | None = None) -> torch.Tensor:
    """t_logits (M, n + 1) teacher edge logits -> tau (M, 1). `quality` (M,) in [0, 1] for mode `quality`."""
    n1 = t_logits.shape[-1]
    if mode == "entropy":
        logp = F.log_softmax(t_logits.float(), -1)
        entropy = -(logp.exp() * logp).sum(-1, keepdim=True)
        return entropy.exp().clamp(1.0, float(n1))
    if mode == "quality":
        if quality is None:
            raise ValueError("DLT mode 'quality' needs the teacher's localisation quality")
        return 1.0 / quality.float().clamp(1.0 / n1, 1.0)[:, None]
    if mode == "std":
        return t_logits.float().std(-1, keepdim=True) + EPS
    if mode == "sharpness":
        return sharpness_temperature(t_logits)
    raise ValueError(f"unknown DLT mode {mode!r}: expected {', '.join(DLT_MODES)}")


@torch.no_grad()
def sharpness_temperature(logits: torch.Tensor) -> torch.Tensor:
    """(M, n + 1) edge logits -> tau (M, 1) = ((n + 1) / perplexity)^(1/3): 1 for a uniform edge, (n + 1)^(1/3)
    for a one-hot one. Computed in float32 without gradient; used for either side."""
    n1 = logits.shape[-1]
    logp = F.log_softmax(logits.float(), -1)
    entropy = -(logp.exp() * logp).sum(-1, keepdim=True)  # in [0, log(n + 1)]
    return torch.exp(SHARPNESS_EXPONENT * (math.log(n1) - entropy)).clamp(1.0, n1 ** SHARPNESS_EXPONENT)


def dlt_kl(s_logits: torch.Tensor, t_logits: torch.Tensor, mode: str, quality: torch.Tensor | None = None) -> torch.Tensor:
    """Per-edge distillation loss (M,) with the dynamic temperature. Gradient reaches s_logits only."""
    t_logits = t_logits.detach()
    if mode == "std":
        tau_t = dlt_temperature(t_logits, "std")
        tau_s = (s_logits.detach().float().std(-1, keepdim=True) + EPS)
        z_t, z_s = zscore(t_logits, -1, std=tau_t), zscore(s_logits, -1, std=tau_s)
        return edge_kl(z_s, z_t, 1.0) * (tau_t * tau_s).squeeze(-1)
    if mode == "sharpness":
        tau_t, tau_s = sharpness_temperature(t_logits), sharpness_temperature(s_logits.detach())
        return edge_kl(s_logits / tau_s, t_logits / tau_t, 1.0) * (tau_t * tau_s).squeeze(-1)
    return edge_kl(s_logits, t_logits, dlt_temperature(t_logits, mode, quality))

