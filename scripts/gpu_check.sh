#!/usr/bin/env bash
# The GPU path as users run it (issue 13, item 6), sized for a 10-minute device check: on CUDA at 640 px, train GFL
# R-50 (gfl_r50_coco_1x) 200 steps, train a GFL R-101 teacher 100 steps, distil the R-50 from it with FTPD
# (gfl_r50_from_r101_coco_1x) 200 steps; print images/s of each and the device. Backbones start from random
# weights (the device machine has no internet); the built-in data is synthesized at 320 px and resized to 640.
#   bash scripts/gpu_check.sh [OUT]        # OUT defaults to runs/gpu_check; the table is OUT/gpu_check.md
# DEVICE=cpu FTPDET_SMOKE=1 runs the same commands shrunk to seconds on a CPU (64 px, one multi-scale size): a check
# of the script, not a measurement.
# On a machine without ftpdet's dependencies, install them first (pydantic and faster-coco-eval are the usual
# missing ones); the script itself only needs `python3 -m ftpdet` to work from the repository root.
set -euo pipefail
OUT=${1:-runs/gpu_check}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
$py - "$DEVICE" <<'PY'
import sys
import torch
assert sys.argv[1] != "cuda" or torch.cuda.is_available(), "no CUDA device: this check is for a GPU machine"
print("device:", torch.cuda.get_device_name(0) if sys.argv[1] == "cuda" else "cpu", "| torch", torch.__version__)
PY
$py -m ftpdet data synth --out "$OUT/data" --num-train 800 --num-val 16 --image-size 320 --seed 0
common=(--set data.root="$OUT/data" --set model.backbone_weights=null --set data.image_size=640 --set data.max_size=640
        --set train.device="$DEVICE" --set train.eval_every=100 --set train.log_every=20 --set train.warmup_steps=20)
# 800 images / batch 16 = 50 steps per epoch: 4 epochs = 200 steps (the lr steps fall after the run)
$py -m ftpdet train gfl_r50_coco_1x "${common[@]}" --set train.epochs=4 --set train.out_dir="$OUT/r50" --overwrite
multiscale=$([ "${FTPDET_SMOKE:-0}" = 1 ] && echo null || echo "[480,640]")  # the 2x config's range, up to 640
$py -m ftpdet train gfl_r101_coco_2x "${common[@]}" --set train.epochs=2 --set data.multiscale="$multiscale" \
    --set train.out_dir="$OUT/r101" --overwrite
$py -m ftpdet distill gfl_r50_from_r101_coco_1x --teacher "$OUT/r101/last.pt" "${common[@]}" --set train.epochs=4 \
    --set train.out_dir="$OUT/ftpd" --overwrite
$py - "$OUT" "$DEVICE" <<'PY'
import sys
from pathlib import Path
import torch
out = Path(sys.argv[1])
rows = []
for name, what in (("r50", "train GFL R-50 (gfl_r50_coco_1x)"), ("r101", "train GFL R-101 (gfl_r101_coco_2x, multi-scale)"),
                   ("ftpd", "distil R-50 from R-101 with FTPD")):
    ckpt = torch.load(out / name / "last.pt", weights_only=True, map_location="cpu")
    cfg = ckpt["config"]
    steps, seconds = ckpt["step"], ckpt["train_seconds"]
    images = steps * cfg["train"]["batch_size"]
    rows.append(f"| {what} | {steps} | {cfg['train']['batch_size']} | {seconds:.0f} | {images / seconds:.1f} |")
device = torch.cuda.get_device_name(0) if sys.argv[2] == "cuda" else "cpu (a check of the script, not a measurement)"
table = "\n".join([f"Device: {device}, torch {torch.__version__}; 640 px (keep-ratio resize of "
                   "square built-in images), float32, random backbones; time of the training steps only (first steps "
                   "included).", "", "| run | steps | batch | seconds | images/s |", "|---|---|---|---|---|", *rows])
(out / "gpu_check.md").write_text(table + "\n")
print(table)
PY
