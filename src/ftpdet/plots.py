"""Plots a user looks at: training curves and dataset statistics (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(metrics_jsonl: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Left: every logged loss term over steps. Right: AP / AP50 / AP75 over epochs."""
    records = [json.loads(ln) for ln in Path(metrics_jsonl).read_text().splitlines() if ln.strip()]
    train = [r for r in records if "eval" not in r]
    evals = [r for r in records if "eval" in r]
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
    # weighted terms (what the optimiser sums); the raw ones (`<name>_raw`) are in metrics.jsonl beside them
    keys = sorted({k for r in train for k in r if k.startswith(("loss", "distill")) and not k.endswith("_raw")})
    for k in keys:
        pts = [(r["step"], r[k]) for r in train if k in r]
        if pts:
            ax_l.plot(*zip(*pts), label=k, lw=1.5 if k == "loss" else 1.0)
    ax_l.set(xlabel="step", ylabel="loss (weighted)", title="training losses")
    ax_l.set_yscale("log")
    if keys:
        ax_l.legend(fontsize=8)
    for k in ("AP", "AP50", "AP75"):
        pts = [(r["epoch"], 100 * r["eval"][k]) for r in evals]
        if pts:
            ax_r.plot(*zip(*pts), marker="o", label=k)
    ax_r.set(xlabel="epoch", ylabel="COCO AP (%)", title="validation")
    if evals:
        ax_r.legend(fontsize=8)
    ax_r.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
