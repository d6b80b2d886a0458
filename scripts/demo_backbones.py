"""Pretrain the demo's backbones, the way the lab benchmark does (docs/sizing.md), and write them into the package.

Why: on a 2-core CPU the demo has minutes, and detectors trained from random weights for a few hundred steps stay
near 5 AP, too weak to show what a teacher gives (docs/demo.md). Real detectors start from pretrained backbones;
ours come from the same built-in generator on a separate set (seed PRETRAIN_SEED, 3,200 images, never the demo's
data), 15 epochs with the lab preset's settings, one run per architecture. Only the backbone is kept, in bf16 (half
the size, and the file deflated; loading casts it back to float32), in the shape of an ftpdet checkpoint, so
`model.backbone_weights` takes the file as it takes any pretraining run.

    python scripts/demo_backbones.py --work runs/demo_backbones     # resumable; ~25 min on 2 CPU cores

writes src/ftpdet/demo_weights/{teacher,student}.pt. The weights depend on the machine that trains them (its
kernels round differently), so a rerun elsewhere gives other, equally good, files.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import torch

from ftpdet.bench.presets import PRESETS, PRETRAIN_SEED
from ftpdet.checkpoint import load_checkpoint
from ftpdet.config import load_config
from ftpdet.data.synth import synthesize_once
from ftpdet.engine.train import train
from ftpdet.files import save_atomic
from ftpdet.provenance import git_commit, machine_description

ROLES = {"student": "demo_student", "teacher": "bench_teacher"}  # the demo's two architectures
TARGET = Path(__file__).resolve().parents[1] / "src" / "ftpdet" / "demo_weights"


def slim(ckpt: dict) -> dict:
    """The backbone of a finished run (its weight average), floats in bf16, as a minimal ftpdet checkpoint."""
    weights = ckpt["ema"] if "ema" in ckpt else ckpt["model"]
    backbone = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in weights.items()
                if k.startswith("backbone.")}
    last = ckpt["history"][-1]["metrics"] if ckpt.get("history") else {}
    return {"config": {"model": ckpt["config"]["model"]}, "model": backbone, "categories": ckpt["categories"],
            "provenance": {"machine": machine_description(), "commit": git_commit(), "pretraining_AP": last.get("AP"),
                           "steps": ckpt["step"]}}


def deflate(path: Path) -> None:
    """Rewrite a torch.save file with its zip entries deflated (torch.load reads them as they are): bf16 weights
    shrink by a fifth (the teacher's 6.1 MB to 4.8), keeping every shipped file under 5 MB."""
    tmp = path.with_name(f".{path.name}.deflate")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            entry.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(entry, src.read(info.filename))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/demo_backbones"))
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    lab = PRESETS["lab"]
    data = args.work / "pretrain_data"
    synthesize_once(data, seed=PRETRAIN_SEED, num_train=lab.pretrain_num_train, num_val=lab.pretrain_num_val,
                    image_size=lab.image_size)
    for role, config in ROLES.items():
        run = args.work / role
        cfg = load_config(config, [f"data.root={data}", f"data.image_size={lab.image_size}", "train.seed=0",
                                   f"train.out_dir={run}", *lab.common, f"train.epochs={lab.pretrain_epochs}",
                                   f"train.eval_every={lab.pretrain_epochs}"])
        ckpt = run / "last.pt"
        done = ckpt.exists() and load_checkpoint(ckpt)["epoch"] == lab.pretrain_epochs
        if not done:
            train(cfg, resume=ckpt.exists())
        out = args.out / f"{role}.pt"
        save_atomic(slim(load_checkpoint(ckpt)), out)
        deflate(out)
        print(f"{role}: {config} backbone -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
