"""`ftpdet viz temperature`: where and how softly the teacher's boxes are transferred.

Per FPN level, heatmaps over the image: the DLT temperature of the teacher's edges (mean over the 4 edges), the
student's own where the mode gives each side its own (`sharpness`, `std`), and the PD location weight (the
teacher's max class score: how much each location counts). Below them, a histogram of the temperatures by region,
so a user sees whether the temperature varies where the weight is: with the image's ground truth (`--ann`),
ATSS positives, near-positives (centre inside an object's box, not positive) and background; without it, bands of
the teacher's confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ftpdet.checkpoint import load_model, load_teacher
from ftpdet.data.coco import CocoDetection, decode_image
from ftpdet.data.transforms import Resize, build_transforms, make_sample
from ftpdet.errors import DatasetError
from ftpdet.methods.functional import split_edges
from ftpdet.methods.temperature import dlt_temperature, sharpness_temperature
from ftpdet.models.criterion import build_targets
from ftpdet.models.detector import decode_boxes, flatten_levels

PER_SIDE = ("sharpness", "std")  # modes where the student's edges get their own temperature
REGIONS = ("positives", "near-positives", "background")
BANDS = ("teacher conf >= 0.3", "0.05-0.3", "< 0.05")


@dataclass
class Temperatures:
    """Per location (N, levels concatenated): the teacher's and (per-side modes) the student's temperature, mean
    over the 4 edges; the PD weight; the region index into `region_names`. `shapes`/`strides` split N into levels."""

    teacher: torch.Tensor
    student: torch.Tensor | None
    weight: torch.Tensor
    region: torch.Tensor
    region_names: tuple[str, ...]
    shapes: list[tuple[int, int]]
    strides: list[int]
    mode: str
    image: torch.Tensor  # (3, S, S) uint8: the network input the maps cover

    def levels(self, values: torch.Tensor) -> list[torch.Tensor]:
        """(N,) -> per level (H_l, W_l)."""
        sizes = [h * w for h, w in self.shapes]
        return [v.reshape(s) for v, s in zip(values.split(sizes), self.shapes)]


def edge_temperature(edges: torch.Tensor, mode: str, n1: int, quality: torch.Tensor | None = None,
                     own: bool = False) -> torch.Tensor:
    """(N, 4 * (n + 1)) edge logits -> (N,) temperature, mean over the 4 edges. `own`: a side's own temperature
    in a per-side mode (the student's)."""
    e = split_edges(edges).reshape(-1, n1)
    if own and mode == "std":
        tau = e.float().std(-1, keepdim=True)
    elif own:
        tau = sharpness_temperature(e)
    else:
        tau = dlt_temperature(e, mode, None if quality is None else quality[:, None].expand(-1, 4).reshape(-1))
    return tau.reshape(-1, 4).mean(-1)


@torch.no_grad()
def location_temperatures(student_ckpt: str | Path, teacher_ckpt: str | Path, image: torch.Tensor,
                          mode: str | None = None, boxes: torch.Tensor | None = None) -> Temperatures:
    """For an image (3, H, W) uint8 and optionally its objects' boxes (G, 4) xyxy original pixels."""
    student, cfg, cats = load_model(student_ckpt)
    teacher, _ = load_teacher(teacher_ckpt, student, cats)
    mode = mode or cfg.distill.ftpd.dlt.mode
    gt = boxes if boxes is not None else torch.zeros(0, 4)
    sample = build_transforms(Resize.of(cfg.data), train=False)(make_sample(image, gt, torch.zeros(len(gt)).long()))
    image = sample["image"].as_subclass(torch.Tensor)
    t_out, s_out = teacher(image[None]), student(image[None])
    priors = student.priors(s_out)
    t_cls, t_edges = flatten_levels(t_out["cls_logits"])[0], flatten_levels(t_out["edge_logits"])[0]
    s_edges = flatten_levels(s_out["edge_logits"])[0]
    conf = t_cls.sigmoid().amax(-1)  # (N,)
    n1 = cfg.model.reg_max + 1

    quality = conf.clone()  # as in training: the teacher box's IoU with its object at positives, confidence elsewhere
    if boxes is not None:
        from ftpdet.losses import aligned_iou

        gt_boxes = sample["boxes"].as_subclass(torch.Tensor).float()
        targets = build_targets(priors, [{"boxes": gt_boxes, "labels": torch.zeros(len(gt_boxes)).long()}],
                                student.num_classes, cfg.model.atss_topk, cfg.model.atss_fallback)
        pos = targets.pos[0]
        if pos.any():
            quality[pos] = aligned_iou(decode_boxes(t_edges[None], priors)[0][pos], targets.boxes[0][pos])
        x, y = priors.points[:, 0, None], priors.points[:, 1, None]
        inside = ((x > gt_boxes[:, 0]) & (x < gt_boxes[:, 2]) & (y > gt_boxes[:, 1]) & (y < gt_boxes[:, 3])).any(1)
        region = torch.where(pos, 0, torch.where(inside, 1, 2))
        names = REGIONS
    else:
        region = torch.where(conf >= 0.3, 0, torch.where(conf >= 0.05, 1, 2))
        names = BANDS
    tau_t = edge_temperature(t_edges, mode, n1, quality if mode == "quality" else None)
    tau_s = edge_temperature(s_edges, mode, n1, own=True) if mode in PER_SIDE else None
    shapes = [tuple(c.shape[-2:]) for c in t_out["cls_logits"]]
    return Temperatures(tau_t, tau_s, conf, region, names, shapes, list(teacher.strides), mode, image)


def image_boxes(ann: Path, image_path: Path, cfg_resize: Resize) -> torch.Tensor:
    """The boxes (G, 4, xyxy original pixels) of the image named like `image_path` in the COCO file `ann`."""
    ds = CocoDetection(ann, image_path.parent, cfg_resize, train=False)
    for rec in ds.records:
        if rec.path.name == image_path.name:
            return torch.from_numpy(rec.boxes).float()
    raise DatasetError(f"{ann}: no image named {image_path.name}")


def plot_temperature(student_ckpt: str | Path, teacher_ckpt: str | Path, image_path: str | Path, out_dir: str | Path,
                     mode: str | None = None, ann: str | Path | None = None) -> Path:
    from ftpdet.plots import plt

    image_path = Path(image_path)
    if not image_path.is_file():
        raise DatasetError(f"{image_path}: image file not found")
    boxes = None
    if ann is not None:
        _, cfg, _ = load_model(student_ckpt)
        boxes = image_boxes(Path(ann), image_path, Resize.of(cfg.data))
    t = location_temperatures(student_ckpt, teacher_ckpt, decode_image(image_path), mode, boxes)
    size = t.image.shape[-1]
    rgb = t.image.permute(1, 2, 0).numpy()
    panels = [(t.teacher, "teacher's DLT temperature", "magma")]
    if t.student is not None:
        panels.append((t.student, "student's own temperature", "magma"))
    panels.append((t.weight, "PD location weight", "viridis"))
    rows = len(t.shapes)
    fig, axes = plt.subplots(rows + 1, len(panels), figsize=(3.5 * len(panels), 3.2 * (rows + 1)), squeeze=False)
    for col, (values, title, cmap) in enumerate(panels):
        for row, (level, stride) in enumerate(zip(t.levels(values), t.strides)):
            ax = axes[row][col]
            ax.imshow(rgb, extent=(0, size, size, 0))
            shown = ax.imshow(level.numpy(), cmap=cmap, alpha=0.6, extent=(0, size, size, 0), interpolation="nearest")
            fig.colorbar(shown, ax=ax, fraction=0.046)
            ax.set_title(f"P{stride.bit_length() - 1} (stride {stride}): {title} ({t.mode})", fontsize=7)
            ax.axis("off")
    for col in range(len(panels)):
        axes[rows][col].axis("off")
    sides = [("teacher", t.teacher)] + ([("student", t.student)] if t.student is not None else [])
    for col, (side, tau) in enumerate(sides):
        ax = axes[rows][col]
        ax.axis("on")
        for index, name in enumerate(t.region_names):
            values = tau[t.region == index].numpy()
            if len(values):
                ax.hist(values, bins=30, alpha=0.5, label=f"{name} ({len(values)})")
        ax.set_xlabel(f"{side}'s temperature ({t.mode})", fontsize=8)
        ax.set_ylabel("locations", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{image_path.stem}_temperature.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
