"""The report's figures (matplotlib, Agg): AP by method, AP over training, LD's temperature sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ftpdet.bench.stats import Results, mean_std


def _save(fig, ax, path: Path, grid: str = "both", **labels: str) -> Path:
    """Labels, grid, legend (when there are labelled artists), then write the PNG and free the figure."""
    from ftpdet.plots import plt

    ax.set(**labels)
    ax.grid(axis=grid, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(res: Results, path: Path) -> Path:
    from ftpdet.plots import plt

    rows = [r for r in res.rows("main") if res.values(r)]
    labels = [r["label"] for r in rows]
    stats = [mean_std(list(res.values(r).values())) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = ["tab:gray" if r["method"] == "student" else "tab:red" if r["method"].startswith("ftpd") else "tab:blue"
              for r in rows]
    ax.bar(labels, [m for m, _ in stats], yerr=[s for _, s in stats], capsize=4, color=colors)
    teacher = res.teacher_ap("main")  # in the title, not as a line: far above the students, it would flatten the bars
    if stats:  # a sitting that ran other parts (--only) may hold no main comparison yet
        ax.set_ylim(max(0, min(m - s for m, s in stats) - 2), None)
    ax.tick_params(axis="x", labelrotation=20)
    return _save(fig, ax, path, grid="y", ylabel="COCO AP (%)",
                 title=f"student AP by method, mean ± std over {res.data['schedule']['seeds']} seeds"
                 + (f" (teacher {teacher:.1f})" if teacher is not None else ""))


def plot_curves(res: Results, path: Path) -> Path:
    """Validation AP over epochs, mean over seeds, per method of the main comparison."""
    from ftpdet.plots import plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for row in res.rows("main"):
        recs = res.records(row)
        if not recs:
            continue
        epochs = [h["epoch"] for h in recs[0]["history"]]
        curve = np.mean([[h["AP"] for h in r["history"]] for r in recs], axis=0)
        style = {"lw": 2.2, "color": "k"} if row["method"] == "student" else {"lw": 2.2} if row["method"] == "ftpd" else {"lw": 1}
        ax.plot(epochs, curve, marker="o", ms=3, label=row["label"], **style)
    return _save(fig, ax, path, xlabel="epoch", ylabel="COCO AP (%)", title="validation AP over training (mean over seeds)")


def plot_tau(res: Results, path: Path) -> Path:
    from ftpdet.plots import plt

    taus, aps = [], []
    for row in res.rows("tau"):
        if row["method"] == "ld" and res.values(row):
            taus.append(float(row["label"].split("=")[1]))
            aps.append(mean_std(list(res.values(row).values()))[0])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(taus, aps, marker="o", label="LD at fixed tau")
    no_tau = res.values(res.row("tau", "FTPD (no tau)"))
    if no_tau:
        ax.axhline(mean_std(list(no_tau.values()))[0], color="tab:red", ls="--", label="FTPD (no temperature)")
    base = res.values(res.row("main", "student"))
    if base:
        ax.axhline(mean_std(list(base.values()))[0], color="k", ls=":", label="student")
    if taus:  # a sitting that ran other parts (--only) may hold no sweep yet
        ax.set_xscale("log")
        ax.set_xticks(taus, [f"{t:g}" for t in taus])
    return _save(fig, ax, path, xlabel="LD temperature tau", ylabel="COCO AP (%)", title="LD's temperature sweep against FTPD")


def plot_unlabeled_size(res: Results, path: Path) -> Path:
    """AP against the number of unlabeled images (0, a quarter, all) for pseudo and FTPD, mean over the seeds each
    point has; the labels-only and all-labels students as lines. At 0, FTPD is the main table's labels-only
    distillation and pseudo is the plain student (with no unlabeled image it adds nothing)."""
    from ftpdet.bench.presets import CEILING_LABEL
    from ftpdet.plots import plt

    n = res.data["data"].get("num_unlabeled") or 0

    def mean(row: dict | None) -> float | None:
        values = list(res.values(row).values()) if row else []
        return mean_std(values)[0] if values else None

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for method, zero, color in (("ftpd", res.row("main", "ftpd"), "tab:red"), ("pseudo", res.row("main", "student"), "tab:blue")):
        points = [(0, mean(zero)), (max(1, n // 4), mean(res.row("unlabeled_size", f"{method}, a quarter of the unlabeled images"))),
                  (n, mean(res.row("unlabeled", method)))]
        points = [(x, y) for x, y in points if y is not None]
        if points:
            ax.plot(*zip(*points), marker="o", color=color, label=method)
    for label, style in (("student", {"color": "k", "ls": ":"}), (CEILING_LABEL, {"color": "tab:green", "ls": "--"})):
        y = mean(res.row("unlabeled", label))
        if y is not None:
            ax.axhline(y, label=f"{label}" if label != "student" else "student, labels only", **style)
    return _save(fig, ax, path, xlabel="unlabeled images", ylabel="COCO AP (%)",
                 title="AP against the number of unlabeled images (mean over seeds)")
