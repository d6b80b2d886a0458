"""`ftpdet viz temperature`: where and how softly the teacher's boxes are transferred.

Per FPN level, two heatmaps over the image: the DLT temperature (mean over the 4 edges; high = the
teacher's edge distributions are ambiguous there and are transferred softly) and the PD location weight
(the teacher's max class score: how much each location counts in the distillation loss).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ftpdet.checkpoint import load_model, load_teacher
from ftpdet.data.coco import decode_image
from ftpdet.data.transforms import Resize, build_transforms, make_sample
from ftpdet.errors import DatasetError
from ftpdet.methods.functional import split_edges
from ftpdet.methods.temperature import dlt_temperature


@torch.no_grad()
def temperature_maps(student_ckpt: str | Path, teacher_ckpt: str | Path, image: torch.Tensor, mode: str | None = None):
    """For an image (3, H, W) uint8: per level (temperature (H_l, W_l), weight (H_l, W_l), stride), the DLT
    mode used, and the image letterboxed to the student's input size (3, S, S), which the maps cover."""
    student, cfg, cats = load_model(student_ckpt)
    teacher, _ = load_teacher(teacher_ckpt, student, cats)
    mode = mode or cfg.distill.ftpd.dlt.mode
    sample = build_transforms(Resize.of(cfg.data), train=False)(
        make_sample(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    )
    image = sample["image"].as_subclass(torch.Tensor)
    t_out = teacher(image[None])
    n1 = cfg.model.reg_max + 1
    maps = []
    for level, (cls, edges) in enumerate(zip(t_out["cls_logits"], t_out["edge_logits"])):
        h, w = cls.shape[-2:]
        conf = cls[0].sigmoid().amax(0)  # (H, W)
        e = split_edges(edges[0].permute(1, 2, 0).reshape(h * w, 4 * n1)).reshape(-1, n1)  # (H * W * 4, n + 1)
        # Without ground truth, the quality mode falls back to the teacher's class-IoU score everywhere.
        quality = conf.flatten()[:, None].expand(-1, 4).reshape(-1) if mode == "quality" else None
        tau = dlt_temperature(e, mode, quality).reshape(h, w, 4).mean(-1)
        maps.append((tau, conf, teacher.strides[level]))
    return maps, mode, image


def plot_temperature(student_ckpt: str | Path, teacher_ckpt: str | Path, image_path: str | Path, out_dir: str | Path,
                     mode: str | None = None) -> Path:
    from ftpdet.plots import plt

    image_path = Path(image_path)
    if not image_path.is_file():
        raise DatasetError(f"{image_path}: image file not found")
    maps, mode, image = temperature_maps(student_ckpt, teacher_ckpt, decode_image(image_path), mode)
    size = image.shape[-1]
    rgb = image.permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(len(maps), 2, figsize=(7, 3.2 * len(maps)), squeeze=False)
    for row, (tau, conf, stride) in enumerate(maps):
        for col, (values, title, cmap) in enumerate(
            ((tau, f"P{stride.bit_length() - 1} (stride {stride}): DLT temperature ({mode})", "magma"),
             (conf, f"P{stride.bit_length() - 1}: PD location weight", "viridis"))
        ):
            ax = axes[row][col]
            ax.imshow(rgb, extent=(0, size, size, 0))
            shown = ax.imshow(values.numpy(), cmap=cmap, alpha=0.6, extent=(0, size, size, 0), interpolation="nearest")
            fig.colorbar(shown, ax=ax, fraction=0.046)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{image_path.stem}_temperature.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
