"""Fix `distill.unlabeled_score_thr` once, by measurement: the score above which the lab teacher's detections best
match the labels on built-in shapes that no run trains or is evaluated on.

The threshold decides which teacher detections stand in for labels on unlabeled images (the `pseudo` control's hard
labels, and the positives some methods need there). A detection is right when it overlaps an unmatched labeled
box of its class with IoU >= 0.5 (greedy in score order, as COCO matches); the chosen threshold maximises F1, the
balance of a pseudo-label's precision (wrong labels teach wrong things) and recall (missed objects are taught as
background). Measured on a held-out set of the built-in shapes (seed 2: neither the lab's images, seed 0, nor its
pretraining set's, seed 1), with the lab's main teacher, trained (or found) by the lab benchmark under --bench.

    python scripts/unlabeled_threshold.py [--bench runs/bench/lab] [--images 1000]

Prints the table, writes docs/unlabeled_threshold.json and docs/unlabeled_threshold.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torchvision.ops import box_iou

from ftpdet.bench.accuracy import AccuracyBench
from ftpdet.bench.presets import PRESETS
from ftpdet.checkpoint import load_model
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.data.synth import synthesize_once
from ftpdet.provenance import git_commit, machine_description
from ftpdet.sections import EvalConfig

HELD_OUT_SEED = 2
THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)]  # 0.05 .. 0.95
IOU = 0.5


def matched(scores: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, gt_boxes: torch.Tensor,
            gt_labels: torch.Tensor) -> torch.Tensor:
    """(K,) bool: each detection (in descending score order) takes the unmatched labeled box of its class it
    overlaps most, if that IoU >= 0.5. A detection's outcome depends only on higher-scoring ones, so one matching at
    the lowest threshold serves every higher one."""
    order = scores.argsort(descending=True)
    hit = torch.zeros(len(scores), dtype=torch.bool)
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    iou = box_iou(boxes, gt_boxes) if len(gt_boxes) and len(boxes) else torch.zeros(len(boxes), len(gt_boxes))
    for k in order.tolist():
        cand = (gt_labels == labels[k]) & ~taken
        if not cand.any():
            continue
        best = torch.where(cand, iou[k], torch.full_like(iou[k], -1)).argmax()
        if iou[k, best] >= IOU:
            hit[k], taken[best] = True, True
    return hit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="runs/bench/lab", help="the lab benchmark's --out (its teacher is used)")
    parser.add_argument("--images", type=int, default=1000, help="held-out images")
    parser.add_argument("--out", default="docs/unlabeled_threshold")
    args = parser.parse_args()

    preset = PRESETS["lab"]
    bench = AccuracyBench(preset, args.bench, progress=True)
    bench.prepare_data()
    teacher_ckpt = bench.teacher("main")
    model = load_model(teacher_ckpt)[0].eval()

    held_out = Path(args.bench) / "threshold_data"
    synthesize_once(held_out, seed=HELD_OUT_SEED, num_train=1, num_val=args.images, image_size=preset.image_size)
    ds = CocoDetection(held_out / "annotations" / "instances_val.json", held_out / "val", preset.image_size)
    scores, hits, num_gt = [], [], 0
    low = EvalConfig(score_thr=THRESHOLDS[0])
    with torch.no_grad():
        for start in range(0, len(ds), 64):
            images, targets = collate([ds[i] for i in range(start, min(start + 64, len(ds)))])
            for det, t in zip(model.predict(images, low), targets):
                scores.append(det["scores"])
                hits.append(matched(det["scores"], det["boxes"], det["labels"], t["boxes"], t["labels"]))
                num_gt += len(t["boxes"])
    scores, hits = torch.cat(scores), torch.cat(hits)
    rows = []
    for thr in THRESHOLDS:
        keep = scores > thr
        tp, fp = int((hits & keep).sum()), int((~hits & keep).sum())
        precision = tp / max(tp + fp, 1)
        recall = tp / max(num_gt, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        rows.append({"threshold": thr, "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                     "detections_per_image": round((tp + fp) / len(ds), 3)})
    best = max(rows, key=lambda r: r["f1"])
    print(f"teacher {teacher_ckpt}; {len(ds)} held-out images, {num_gt / len(ds):.2f} labeled boxes per image")
    print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>6} {'dets/img':>8}")
    for r in rows:
        mark = "  <- best F1" if r is best else ""
        print(f"{r['threshold']:>9.2f} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f} "
              f"{r['detections_per_image']:>8.2f}{mark}")
    out = Path(args.out)
    result = {"command": "python scripts/unlabeled_threshold.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items()),
              "machine": machine_description(), "commit": git_commit(), "teacher": str(teacher_ckpt),
              "teacher_AP": bench.teacher_records["main"]["AP"], "held_out": {"seed": HELD_OUT_SEED, "images": len(ds),
              "boxes_per_image": round(num_gt / len(ds), 3)}, "iou": IOU, "rows": rows, "best": best}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key in ("precision", "recall", "f1"):
        ax.plot([r["threshold"] for r in rows], [r[key] for r in rows], marker="o", ms=3, label=key)
    ax.axvline(best["threshold"], color="grey", ls="--", lw=1)
    ax.set_xlabel("teacher score threshold")
    ax.set_title(f"Lab teacher's detections vs labels ({len(ds)} held-out shapes)", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(f"best F1 at {best['threshold']}: wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
