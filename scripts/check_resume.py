"""Does a run cut inside an epoch and resumed compute what an uninterrupted run computes, at full size?

The tests check exact resume on tiny runs (tests/test_distributed.py); this runs a real config (e.g. a benchmark
pretraining's config.yaml, bf16 and weight average included) twice from the start for EPOCHS epochs: once
uninterrupted, once stopped by SIGTERM at the first logged step >= CUT and resumed. It prints, per logged step,
whether the two logged the same losses to the last digit (the first line after the resume averages only the steps
after it, so it differs by construction), and whether the weights and weight average at the end are equal, bit for bit.

    python scripts/check_resume.py CONFIG.yaml [--epochs 2] [--cut 250] [--out runs/check_resume]

Run it from the repository root (relative data paths in CONFIG are read from there). It trains about EPOCHS * 2
epochs of CONFIG (the notes' check of 2026-12-02, a teacher pretraining at 2 epochs: about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ftpdet.checkpoint import load_checkpoint
from ftpdet.config import load_config
from ftpdet.engine.train import train

CUT_RUN = """
import sys
from ftpdet.config import load_config
from ftpdet.engine.train import train
from ftpdet.errors import Interrupted
try:
    train(load_config(sys.argv[1], ["train.out_dir=" + sys.argv[2]]), stop_after=int(sys.argv[3]), progress=False)
except Interrupted:  # the SIGTERM below: last.pt holds the step it stopped at
    sys.exit(143)
"""


def logged(run_dir: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "eval" not in r}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cut", type=int, default=250, help="stop at the first logged step >= this")
    ap.add_argument("--out", default="runs/check_resume")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    full, cut = out / "full", out / "cut"

    train(load_config(args.config, [f"train.out_dir={full}"]), stop_after=args.epochs, progress=False)

    proc = subprocess.Popen([sys.executable, "-c", CUT_RUN, args.config, str(cut), str(args.epochs)])
    while not ((cut / "metrics.jsonl").is_file() and any(s >= args.cut for s in logged(cut))):
        if proc.poll() is not None:
            raise SystemExit(f"the cut run ended (exit {proc.returncode}) before step {args.cut}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    stopped = load_checkpoint(cut / "last.pt")
    train(load_config(args.config, [f"train.out_dir={cut}"]), resume=True, stop_after=args.epochs - stopped["epoch"],
          progress=False)

    a, b = logged(full), logged(cut)
    print(f"cut at step {stopped['step']}, resumed; logged losses, uninterrupted vs cut:")
    for step in sorted(s for s in a if s > stopped["step"]):
        same = all(a[step][k] == b[step][k] for k in a[step] if k.startswith("loss"))
        print(f"  step {step}: " + ("same" if same else f"differ ({a[step]['loss']:.9f} vs {b[step]['loss']:.9f})"))
    ca, cb = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    equal = True
    for part in ("model", "ema"):
        if part in ca:
            differ = sum(not torch.equal(v, cb[part][k]) for k, v in ca[part].items())
            equal &= differ == 0
            print(f"{part} at step {ca['step']} vs {cb['step']}: {differ} of {len(ca[part])} tensors differ")
    return 0 if equal and ca["step"] == cb["step"] else 1


if __name__ == "__main__":
    sys.exit(main())
