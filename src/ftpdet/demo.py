"""`ftpdet demo` / `make demo`: the whole story on the built-in dataset, on a CPU, in minutes.

Synthesize the shapes dataset, train the teacher and the much smaller student with the builtin
configs, distil the same student from the teacher with FTPD, then print all three side by side and
save plots, prediction images, a DLT temperature picture and a report under the demo directory. AP is the final checkpoint's on the validation set (no best-epoch picking on the same set).
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import torch

from ftpdet.config import SMOKE_DATA, SMOKE_SCHEDULE, Config, load_config
from ftpdet.engine.evaluate import METRIC_KEYS
from ftpdet.provenance import machine_description

FULL = {"num_train": 400, "num_val": 400, "image_size": 128}
# The demo's pair: the lab's MobileNetV3-large teacher (2x cheaper per step than the ResNet-18 demo_teacher on a CPU
# without native bf16: docs/speed.md) and the half-width MobileNetV3-small student, both starting from backbones
# pretrained on a separate built-in set and shipped in the package (docs/demo.md says why and how).
TEACHER, STUDENT = "bench_teacher", "demo_student"
# The demo's schedule, shorter than its configs' 10 epochs so that `make demo` fits about 6 minutes on 2 CPU cores
# (docs/demo.md has the measurement); `ftpdet train demo_teacher` still trains the configs' full schedule.
DEMO_SCHEDULE = ("train.epochs=10", "train.eval_every=5")


# The demo's seed noise, measured by `python scripts/demo_seeds.py --seeds 5` after a `make demo` at this schedule
# (docs/demo.md has the run, its machine and every seed): the student's AP over 5 seeds (mean, sample std) and the
# FTPD student's paired gain over the same seeds (mean and 95% interval). Measure again when the schedule, the data or
# the models change.
SEED_NOISE = {"seeds": 5, "student": (9.58, 0.19), "gain": (1.05, 0.56, 1.55)}  # docs/demo_seeds.json


def seed_noise_note() -> str:
    n, (s_mean, s_std), (g, lo, hi) = SEED_NOISE["seeds"], SEED_NOISE["student"], SEED_NOISE["gain"]
    return (f"Seed noise of this demo, measured over {n} seeds (docs/demo.md): the student scores {s_mean:.1f} AP with a "
            f"standard deviation of {s_std:.1f} AP across seeds; the FTPD student's paired gain is {g:+.1f} AP, 95% "
            f"interval [{lo:+.1f}, {hi:+.1f}]. One run's difference is one draw of that gain.")


def _dataset(out: Path, quick: bool) -> Path:
    from ftpdet.data.synth import synthesize_once

    data = out / "data"
    # 1,600 / 400 images (docs/sizing.md); the demo's length is set by DEMO_SCHEDULE.
    spec = {"seed": 0, **(SMOKE_DATA if quick else FULL)}
    t = time.perf_counter()
    if synthesize_once(data, **spec):
        print(f"built-in dataset: {spec['num_train']} train / {spec['num_val']} val images in {time.perf_counter() - t:.0f} s -> {data}")
    else:
        print(f"reusing the built-in dataset in {data}")
    return data


def backbone_file(role: str) -> Path:
    """The shipped pretrained backbone of the demo's teacher or student (scripts/demo_backbones.py made it)."""
    return Path(str(resources.files("ftpdet") / "demo_weights" / f"{role}.pt"))


def _config(name: str, run_dir: Path, data: Path, quick: bool, backbone: str) -> Config:
    overrides = [f"data.root={data}", f"train.out_dir={run_dir}", f"model.backbone_weights={backbone_file(backbone)}"]
    return load_config(name, overrides + list(SMOKE_SCHEDULE if quick else DEMO_SCHEDULE))


def _params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def _comparison_plot(runs: dict[str, dict], out_png: Path) -> None:
    from ftpdet.plots import plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in runs.items():
        hist = r["history"]
        ax.plot([h["epoch"] for h in hist], [100 * h["metrics"]["AP"] for h in hist], marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="COCO AP (%)", title="validation AP on the built-in dataset")
    ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs only
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _predictions(out: Path, models: dict[str, tuple], data: Path, count: int = 4) -> list[Path]:
    """Every run's detections on the same validation images, side by side. models: name -> load_model()."""
    from PIL import Image, ImageDraw

    from ftpdet.engine.predict import draw_detections, predict_image

    pred_dir = out / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted((data / "val").glob("*.png"))[:count]:
        panels = []
        for name, (model, cfg, cats) in models.items():
            size = cfg.data.image_size
            image, det = predict_image(model, path, size, cfg.eval.model_copy(update={"score_thr": 0.3}))
            panels.append(draw_detections(image, det, cats.names, upscale=max(1, 320 // size)))
        title_h = 16
        canvas = Image.new("RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height + title_h), "white")
        draw = ImageDraw.Draw(canvas)
        x = 0
        for name, p in zip(models, panels):
            draw.text((x + 4, 2), name, fill="black")
            canvas.paste(p, (x, title_h))
            x += p.width + 8
        target = pred_dir / f"{path.stem}.png"
        canvas.save(target)
        written.append(target)
    return written


def format_table(runs: dict[str, dict]) -> str:
    head = f"| model | params (M) | {' | '.join(METRIC_KEYS)} | train time (s) |"
    rule = "|" + "---|" * (len(METRIC_KEYS) + 3)
    rows = [
        f"| {name} | {r['params_m']:.2f} | " + " | ".join(f"{100 * r['metrics'][k]:.1f}" for k in METRIC_KEYS)
        + f" | {r['train_seconds']:.0f} |"
        for name, r in runs.items()
    ]
    return "\n".join([head, rule, *rows])


def run_demo(out: Path = Path("runs/demo"), quick: bool = False) -> dict:
    from ftpdet.checkpoint import load_model
    from ftpdet.engine.train import train

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = _dataset(out, quick)
    runs: dict[str, dict] = {}
    models: dict[str, tuple] = {}  # role -> (model, config, categories), loaded once for params and predictions
    teacher_ckpt = out / "teacher" / "last.pt"
    # (row name, builtin config, run directory, teacher checkpoint or None, shipped backbone)
    plan = [("teacher", TEACHER, "teacher", None, "teacher"), ("student", STUDENT, "student", None, "student"),
            ("FTPD student", STUDENT, "ftpd", teacher_ckpt, "student")]
    for role, config_name, run_dir, teacher, backbone in plan:
        cfg = _config(config_name, out / run_dir, data, quick, backbone)
        how = f", distilled from the teacher with {cfg.distill.method}" if teacher else ""
        print(f"\n== {role}: {cfg.model.backbone} (width {cfg.model.width_mult}), FPN {cfg.model.fpn_channels} ch, "
              f"{cfg.model.num_convs} conv(s) per tower{how}")
        result = train(cfg, overwrite=True, teacher=teacher)
        models[role] = load_model(result.out_dir / "last.pt")
        runs[role] = {
            "config": cfg.model.model_dump(),
            "metrics": result.last_metrics,
            "history": result.history,
            "train_seconds": result.train_seconds,
            "epochs": cfg.train.epochs,
            "params_m": _params(models[role][0]),
            "checkpoint": str(result.out_dir / "last.pt"),
        }

    _comparison_plot(runs, out / "comparison.png")
    preds = _predictions(out, models, data)
    from ftpdet.viz import plot_temperature

    val_image = sorted((data / "val").glob("*.png"))[1]
    temperature_png = plot_temperature(runs["FTPD student"]["checkpoint"], teacher_ckpt, val_image, out / "temperature")
    elapsed = time.perf_counter() - t_start
    gap = 100 * (runs["teacher"]["metrics"]["AP"] - runs["student"]["metrics"]["AP"])
    gain = 100 * (runs["FTPD student"]["metrics"]["AP"] - runs["student"]["metrics"]["AP"])
    table = format_table(runs)
    epochs = runs["student"]["epochs"]  # the same schedule for all three runs
    summary = {
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in runs.items()},
        "teacher_minus_student_AP": gap,
        "ftpd_minus_student_AP": gain,
        "elapsed_seconds": elapsed,
        "quick": quick,
        "machine": machine_description(),
        "seed_noise": SEED_NOISE,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    from ftpdet.data.stats import dataset_stats

    sizes = dataset_stats(data / "annotations" / "instances_val.json")["sizes"]
    empty = [f"AP{b[0]}" for b in ("small", "medium", "large") if sizes[b] == 0]
    verb = "reads" if len(empty) == 1 else "read"
    size_note = f" {', '.join(empty)} {verb} 0: the validation set has no object of that COCO size." if empty else ""
    report = [
        "# ftpdet demo" + (" (quick smoke run: not a result)" if quick else ""),
        "",
        f"Produced by `ftpdet demo --out {out}`{' --quick' if quick else ''} in {elapsed / 60:.1f} min on {summary['machine']}.",
        "AP is COCO AP (%) on the built-in validation set, final checkpoint of each run (seed 0); "
        f"each run trained {epochs} epoch{'s' if epochs != 1 else ''}." + size_note,
        "",
        table,
        "",
        f"Teacher - student: {gap:+.1f} AP. FTPD student - student: {gain:+.1f} AP (this run, seed 0).",
        "",
        seed_noise_note(),
        "",
        "![AP per epoch](comparison.png)",
        "",
        f"![DLT temperature and PD weights]({temperature_png.relative_to(out)})",
    ]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n" + table)
    print(f"\nteacher - student: {gap:+.1f} AP; FTPD student - student: {gain:+.1f} AP (seed 0; over "
          f"{SEED_NOISE['seeds']} seeds the gain is {SEED_NOISE['gain'][0]:+.1f} AP and the student's std "
          f"{SEED_NOISE['student'][1]:.1f} AP); demo took {elapsed / 60:.1f} min")
    print(f"report: {out / 'report.md'}; plots: {out / 'comparison.png'}, {out}/*/curves.png; predictions: {preds[0].parent}")
    return summary
