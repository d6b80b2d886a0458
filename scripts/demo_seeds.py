"""The demo's seed noise, measured: its student and its FTPD student over several seeds, paired, from the teacher
a finished `make demo` left in runs/demo/teacher (one teacher: the demo trains one).

    python scripts/demo_seeds.py --demo runs/demo --seeds 5 --out runs/demo_seeds

Prints each seed's AP (final checkpoint, as the demo reports), the spread of the student's AP over seeds and the
FTPD student's paired gain with its 95% interval; writes seeds.json. docs/demo.md quotes it, and the demo's report
states the spread it measured (ftpdet.demo.SEED_NOISE). Resumable: a finished seed is not trained again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ftpdet.bench.stats import ci95, mean_std, paired
from ftpdet.checkpoint import load_checkpoint
from ftpdet.demo import STUDENT, _config
from ftpdet.engine.train import train
from ftpdet.provenance import git_commit, machine_description


def final_ap(run_dir: Path) -> float | None:
    path = run_dir / "last.pt"
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]["train"]
    return 100 * ckpt["history"][-1]["metrics"]["AP"] if ckpt["epoch"] == cfg["epochs"] and ckpt["history"] else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/demo_seeds"))
    args = parser.parse_args()
    data, teacher = args.demo / "data", args.demo / "teacher" / "last.pt"
    if not teacher.is_file():
        raise SystemExit(f"{teacher}: not found; run `make demo` first")
    ap: dict[str, dict[int, float]] = {"student": {}, "ftpd": {}}
    for seed in range(args.seeds):
        for role, teacher_ckpt in (("student", None), ("ftpd", teacher)):
            run_dir = args.out / f"{role}-s{seed}"
            if final_ap(run_dir) is None:
                cfg = _config(STUDENT, run_dir, data, quick=False, backbone="student")
                cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
                train(cfg, overwrite=True, teacher=teacher_ckpt, progress=False)
            ap[role][seed] = final_ap(run_dir)
        print(f"seed {seed}: student {ap['student'][seed]:.2f}, FTPD student {ap['ftpd'][seed]:.2f} AP", flush=True)
    s_mean, s_std = mean_std(list(ap["student"].values()))
    f_mean, f_std = mean_std(list(ap["ftpd"].values()))
    gain = paired(ap["ftpd"], ap["student"])
    g_mean, lo, hi = ci95(gain)
    print(f"student {s_mean:.2f} (std {s_std:.2f} over {args.seeds} seeds); FTPD student {f_mean:.2f} (std {f_std:.2f}); "
          f"gain {g_mean:+.2f} [{lo:+.2f}, {hi:+.2f}] (95% interval of the paired difference)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps({
        "command": "python scripts/demo_seeds.py " + f"--demo {args.demo} --seeds {args.seeds} --out {args.out}",
        "commit": git_commit(), "machine": machine_description(), "ap": ap,
        "student_std": s_std, "ftpd_std": f_std, "gain": [g_mean, lo, hi]}, indent=1))


if __name__ == "__main__":
    main()
