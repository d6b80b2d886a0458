"""`ftpdet data stats`: what is in a COCO file before you train on it (per-class counts, box sizes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftpdet.data.coco import categories_of, read_coco_json
from ftpdet.errors import DatasetError

# COCO's size buckets, by area in pixels: small < 32^2 <= medium < 96^2 <= large.
SIZE_BUCKETS = (("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2), ("large", 96.0**2, float("inf")))


def dataset_stats(ann_file: str | Path) -> dict[str, Any]:
    data = read_coco_json(ann_file)  # ids unique, references resolved, boxes 4 finite numbers
    if not data["images"]:
        raise DatasetError(f"{ann_file}: empty dataset (no images), nothing to count")
    cats = categories_of(data)
    names = dict(zip(cats.ids, cats.names))
    per_class = {n: 0 for n in cats.names}
    sizes = {b[0]: 0 for b in SIZE_BUCKETS}
    per_class_size = {n: {b[0]: 0 for b in SIZE_BUCKETS} for n in cats.names}
    annotated = set()
    for ann in data["annotations"]:
        name = names[ann["category_id"]]
        per_class[name] += 1
        w, h = float(ann["bbox"][2]), float(ann["bbox"][3])
        area = float(ann.get("area", w * h))
        bucket = next(b for b, lo, hi in SIZE_BUCKETS if lo <= area < hi)
        sizes[bucket] += 1
        per_class_size[name][bucket] += 1
        annotated.add(ann["image_id"])
    return {
        "file": str(ann_file),
        "images": len(data["images"]),
        "images_without_annotations": len(data["images"]) - len(annotated),
        "annotations": len(data["annotations"]),
        "per_class": per_class,
        "sizes": sizes,
        "per_class_sizes": per_class_size,
    }


def format_stats(stats: dict[str, Any]) -> str:
    lines = [
        f"{stats['file']}: {stats['images']} images ({stats['images_without_annotations']} without annotations), "
        f"{stats['annotations']} boxes",
        f"{'class':<16}{'boxes':>8}{'small':>8}{'medium':>8}{'large':>8}",
    ]
    for name, count in stats["per_class"].items():
        s = stats["per_class_sizes"][name]
        lines.append(f"{name:<16}{count:>8}{s['small']:>8}{s['medium']:>8}{s['large']:>8}")
    s = stats["sizes"]
    lines.append(f"{'all':<16}{stats['annotations']:>8}{s['small']:>8}{s['medium']:>8}{s['large']:>8}")
    return "\n".join(lines)


def plot_stats(stats: dict[str, Any], out_png: str | Path) -> Path:
    from ftpdet.plots import plt

    fig, (ax_c, ax_s) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    names = list(stats["per_class"])
    ax_c.bar(names, [stats["per_class"][n] for n in names], color="tab:blue")
    ax_c.set(title="boxes per class", ylabel="boxes")
    ax_c.tick_params(axis="x", rotation=45)
    buckets = list(stats["sizes"])
    ax_s.bar(buckets, [stats["sizes"][b] for b in buckets], color="tab:orange")
    ax_s.set(title="box sizes (COCO buckets)")
    fig.suptitle(Path(stats["file"]).name)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
