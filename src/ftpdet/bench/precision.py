"""`ftpdet bench precision`: every precision and memory format of some models on this machine, timed in turn, next
to what `train.amp: auto` picks here. The evidence for docs/speed.md's precision table: bf16 autocast pays off only
where the CPU runs it natively, and not for every model even there.

A pass is what auto times (models/precision.py): forward + backward of a 16-image batch in train mode (a model that
trains), a no-grad forward in eval mode (a teacher). bf16 is timed here even where it is emulated (auto never
tries it there), since the point is its cost.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import torch

from ftpdet.config import load_config
from ftpdet.hardware import capability
from ftpdet.models.detector import build_detector
from ftpdet.models.precision import Precision, candidates, choose, time_candidates
from ftpdet.provenance import git_commit, machine_description

ALL = [Precision(), Precision("none", True), Precision("bf16"), Precision("bf16", True)]


def precision_table(configs: list[str], out: str | Path, batch: int = 16, image_size: int = 128, rounds: int = 3,
                    num_classes: int = 10, command: str | None = None) -> Path:
    cap = capability("cpu")
    rows = []
    print(f"{machine_description('cpu')}: batch {batch}, {image_size} px, fastest of {rounds} passes (ms)")
    print(f"| model | pass | {' | '.join(p.describe() for p in ALL)} | auto picks |")
    print("|---|---|" + "---|" * (len(ALL) + 1))
    for name in configs:
        cfg = load_config(name)
        model = build_detector(cfg.model.model_copy(update={"backbone_weights": None}), num_classes)
        for train in (True, False):
            ms = {p: 1000 * t for p, t in time_candidates(model, ALL, batch, image_size, torch.device("cpu"), train,
                                                          rounds).items()}
            allowed = candidates(cap)
            pick = choose({p: ms[p] for p in allowed})
            what = "forward + backward" if train else "no-grad forward"
            print(f"| {name} ({cfg.model.backbone}) | {what} | " + " | ".join(f"{ms[p]:.0f}" for p in ALL)
                  + f" | {pick.describe()} |", flush=True)
            rows.append({"config": name, "backbone": cfg.model.backbone, "train": train,
                         "ms": {p.describe(): round(ms[p], 1) for p in ALL}, "auto": pick.describe()})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "precision.json"
    path.write_text(json.dumps({
        "command": command or "ftpdet bench precision", "date": date.today().isoformat(), "commit": git_commit(),
        "machine": machine_description("cpu"), "batch": batch, "image_size": image_size, "rounds": rounds,
        "rows": rows}, indent=1))
    return path
