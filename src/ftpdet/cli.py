"""The `ftpdet` command line. Each command fails in one line naming the file or key (exit code 2)."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from ftpdet.errors import FtpdetError, Interrupted

app = typer.Typer(
    help="Small, fast detectors by distilling a GFL teacher into a small student (FTPD and baselines).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build or inspect COCO-format datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
viz_app = typer.Typer(help="Pictures of what distillation does.", no_args_is_help=True)
app.add_typer(viz_app, name="viz")
bench_app = typer.Typer(help="Benchmarks: accuracy of every method over paired seeds, speed, the report.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")
import_app = typer.Typer(help="Bring a model trained elsewhere in as an ftpdet checkpoint (e.g. a teacher).",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


# FTPDET_SMOKE=1 shrinks every schedule to seconds (ftpdet.config.SMOKE_SCHEDULE / SMOKE_DATA, the smoke benchmark
# preset) so a test can run each command of the README and the tutorial as written; never set it for real work.
SMOKE = os.environ.get("FTPDET_SMOKE") == "1"


def smoke_overrides() -> list[str]:
    from ftpdet.config import SMOKE_SCHEDULE

    return list(SMOKE_SCHEDULE) if SMOKE else []


def smoke_note(what: str) -> None:
    if SMOKE:
        typer.echo(f"FTPDET_SMOKE=1: {what} shrunk to a smoke test (not a result)", err=True)


def leave_process_group() -> None:
    """Under torchrun, leave the process group once training has succeeded. A gloo group left to the interpreter's
    teardown can abort the process at exit ("terminate called without an active exception": pytorch/pytorch#190489),
    which failed a DDP test once. Not on errors: a rank that tears down while others wait in a collective can hang
    them."""
    from ftpdet.distributed import cleanup

    cleanup()


def is_rank_zero() -> bool:
    """torchrun sets RANK; a plain process is rank 0. (Read from the environment: no torch import for --help.)"""
    return os.environ.get("RANK", "0") == "0"


def ensure_writable(path: Path) -> Path:
    from ftpdet.files import ensure_writable as check

    return check(path)


def friendly(fn: Callable) -> Callable:
    """User-fixable errors become one line on stderr and exit code 2; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FtpdetError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except OSError as e:  # a file system refusal we did not foresee: still one line, naming the path
            typer.echo(f"error: {e.filename or ''}: {e.strerror or e}", err=True)
            raise typer.Exit(2) from None
        except Interrupted as e:  # the trainer already said where it stopped and how to resume
            raise typer.Exit(128 + e.signum) from None

    return wrapper


@data_app.command("synth")
@friendly
def data_synth(
    out: Annotated[Path, typer.Option(help="Output directory (train/, val/, annotations/).")],
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    num_train: Annotated[int, typer.Option(min=1)] = 2000,
    num_val: Annotated[int, typer.Option(min=1)] = 500,
    image_size: Annotated[int, typer.Option(min=32)] = 128,
    classes: Annotated[int, typer.Option(min=1, max=10, help="Number of classes (1-10).")] = 10,
    min_object_size: Annotated[float, typer.Option(help="Smallest object extent in pixels (tiny ones are hard).")] = 6.0,
    kind: Annotated[str, typer.Option(help="shapes (the built-in dataset) | pictograms (pictograms of real things "
                                      "on photographs and terrain, from files inside matplotlib).")] = "shapes",
    num_unlabeled: Annotated[int, typer.Option(min=0, help="Also write OUT/unlabeled/: images only, from a stream of "
                                               "their own, for `ftpdet distill --unlabeled` (their labels go to "
                                               "annotations/instances_unlabeled.json, for the all-labels ceiling).")] = 0,
) -> None:
    """Write a built-in dataset in COCO format: the shapes, or the pictograms."""
    from ftpdet.config import SMOKE_DATA
    from ftpdet.data.synth import synthesize

    if SMOKE:
        smoke_note("dataset")
        num_train, num_val = min(num_train, SMOKE_DATA["num_train"]), min(num_val, SMOKE_DATA["num_val"])
        num_unlabeled = min(num_unlabeled, SMOKE_DATA["num_train"])
        image_size = SMOKE_DATA["image_size"]

    try:
        synthesize(out, seed=seed, num_train=num_train, num_val=num_val, image_size=image_size, num_classes=classes,
                   min_object_size=min_object_size, kind=kind, num_unlabeled=num_unlabeled)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    extra = f" + {num_unlabeled} unlabeled ({out / 'unlabeled'})" if num_unlabeled else ""
    typer.echo(f"wrote {num_train} train + {num_val} val images{extra} to {out} "
               f"(annotations in {out / 'annotations'})")


@data_app.command("stats")
@friendly
def data_stats(
    ann: Annotated[Path, typer.Option(help="COCO instances JSON.")],
    out: Annotated[Optional[Path], typer.Option(help="Directory for stats.png and stats.json.")] = None,
) -> None:
    """Per-class box counts and COCO size buckets (small/medium/large), printed and plotted."""
    from ftpdet.data.stats import dataset_stats, format_stats, plot_stats

    stats = dataset_stats(ann)
    typer.echo(format_stats(stats))
    if out is not None:
        ensure_writable(out)
        (out / "stats.json").write_text(json.dumps(stats, indent=2))
        typer.echo(f"saved {plot_stats(stats, out / 'stats.png')}")


@data_app.command("convert")
@friendly
def data_convert(
    src: Annotated[Path, typer.Argument(help="YOLO: data.yaml or its folder; VOC: the root with Annotations/, "
                                             "JPEGImages/ and ImageSets/Main/.")],
    from_: Annotated[str, typer.Option("--from", help="The source format: yolo | voc | coco.")],
    out: Annotated[Path, typer.Option(help="Output directory (COCO: train/, val/, annotations/, the layout every "
                                           "command takes).")],
    to: Annotated[str, typer.Option(help="The output format: coco (default), or yolo | voc from --from coco.")] = "coco",
) -> None:
    """Convert a YOLO or Pascal VOC dataset to the COCO layout (DIR/{train,val}/, DIR/annotations/), or a COCO one
    to YOLO or VOC."""
    from ftpdet.data.convert import convert

    ensure_writable(out)
    counts = convert(from_, src, out, to)
    for split, c in counts.items():
        if to == "coco":
            crowd = f" ({c['crowd']} marked iscrowd: VOC's difficult)" if c["crowd"] else ""
        else:
            crowd = f" ({c['crowd']} crowd boxes {'left out' if to == 'yolo' else 'marked difficult'})" if c["crowd"] else ""
        typer.echo(f"{split}: {c['images']} images, {c['boxes']} boxes{crowd}")
    if to == "coco":
        typer.echo(f"written to {out}; train with --set data.root={out}")
    else:
        typer.echo(f"written to {out}; train on it in place with --set data.format={to} --set data.root={out}")


SetOption = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a config key, e.g. --set train.lr=3e-4 (repeatable).")
]


@app.command("train")
@friendly
def train_cmd(
    config: Annotated[str, typer.Argument(help="YAML config path, or a builtin name such as demo_teacher.")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in train.out_dir from its last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start over in a run directory that already holds a run.")] = False,
) -> None:
    """Train a GFL detector; writes last.pt, best.pt, metrics.jsonl, curves.png and eval.json. (A config that names a
    teacher in distill.teacher distils from it, as `ftpdet distill` does.)"""
    from ftpdet.api import train

    smoke_note("training schedule")
    result = train(config, overrides=(set_ or []) + smoke_overrides(), resume=resume, overwrite=overwrite)
    if is_rank_zero():  # under torchrun every process returns; one line is enough
        typer.echo(f"best AP {100 * result.best_metrics.get('AP', 0):.1f} -> {result.out_dir / 'best.pt'}")
    leave_process_group()


@app.command("distill")
@friendly
def distill_cmd(
    config: Annotated[str, typer.Argument(help="Student YAML config path, or a builtin name such as demo_student.")],
    teacher: Annotated[Optional[Path], typer.Option(help="Teacher checkpoint (.pt) trained on the same classes "
                                                    "(default: the config's distill.teacher).")] = None,
    method: Annotated[Optional[str], typer.Option(help="kd | ld | crosskd | bckd | pkd | ftpd, or a combination: "
                                                  "ftpd+pkd (default: the config's distill.method, ftpd); pseudo: "
                                                  "the teacher's detections as labels on --unlabeled images.")] = None,
    unlabeled: Annotated[Optional[Path], typer.Option(help="Unlabeled images beside the labeled ones: a folder "
                                                      "(recursively) or a COCO JSON listing them (data.unlabeled).")] = None,
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in train.out_dir from its last.pt.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start over in a run directory that already holds a run.")] = False,
) -> None:
    """Distil a student from a teacher; same outputs as train (the checkpoint holds the student only)."""
    from ftpdet.api import distill

    smoke_note("training schedule")
    overrides = ([f"data.unlabeled={unlabeled}"] if unlabeled is not None else []) + (set_ or [])
    result = distill(config, teacher=teacher, method=method, overrides=overrides + smoke_overrides(),
                     resume=resume, overwrite=overwrite)
    if is_rank_zero():
        typer.echo(f"best AP {100 * result.best_metrics.get('AP', 0):.1f} -> {result.out_dir / 'best.pt'}")
    leave_process_group()


@app.command("eval")
@friendly
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint, or an exported .onnx model (run by ONNX Runtime).")],
    ann: Annotated[Path, typer.Option(help="COCO instances JSON of the evaluation set.")],
    images: Annotated[Path, typer.Option(help="Directory of the evaluation images.")],
    out: Annotated[Optional[Path], typer.Option(help="Write detections (COCO results format) here.")] = None,
    metrics_out: Annotated[Optional[Path], typer.Option(help="Metrics JSON (default: next to --out, or not written).")] = None,
) -> None:
    """COCO mAP (AP, AP50, AP75, APs, APm, APl) of a checkpoint or an exported ONNX model through COCOeval."""
    from ftpdet.api import evaluate_checkpoint
    from ftpdet.engine.evaluate import summarize

    for target in (out, metrics_out):
        if target is not None:
            ensure_writable(target.parent)  # before the evaluation, not after it
    metrics, detections = evaluate_checkpoint(checkpoint, ann, images)
    typer.echo(summarize(metrics))
    typer.echo(json.dumps(metrics))
    if out is not None:
        out.write_text(json.dumps(detections))
        metrics_out = metrics_out or out.with_name(out.stem + "_metrics.json")
        typer.echo(f"saved {len(detections)} detections to {out}")
    if metrics_out is not None:
        metrics_out.write_text(json.dumps(metrics, indent=2))
        typer.echo(f"saved metrics to {metrics_out}")


@app.command("predict")
@friendly
def predict_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint, or an exported .onnx model.")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option(help="Directory for the drawn images.")],
    score_thr: Annotated[float, typer.Option(min=0, max=1, help="Draw detections above this score.")] = 0.3,
) -> None:
    """Draw boxes, labels and scores on images."""
    from ftpdet.api import predict

    for path in predict(checkpoint, images, out, score_thr=score_thr):
        typer.echo(f"saved {path}")


@app.command("export")
@friendly
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A .pt checkpoint (its student; a teacher is never in it).")],
    out: Annotated[Path, typer.Option(help="The .onnx file to write.")],
    image_size: Annotated[Optional[int], typer.Option(min=32, help="Input side (default: the training size).")] = None,
    dynamic_batch: Annotated[bool, typer.Option(help="Any batch size (default: batch 1).")] = False,
    nms: Annotated[bool, typer.Option(help="Put class-wise NMS (ONNX NonMaxSuppression) in the graph.")] = False,
) -> None:
    """The student's inference graph as ONNX: uint8 images in, raw head outputs and decoded scores/boxes out
    (optionally NMS); class names, input size and preprocessing in the model's metadata."""
    from ftpdet.api import export

    path = export(checkpoint, out, image_size=image_size, dynamic_batch=dynamic_batch, nms=nms)
    typer.echo(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB); check it: ftpdet eval {path} --ann ... --images ...")


@import_app.command("mmdet")
@friendly
def import_mmdet_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="An mmdetection GFL checkpoint (.pth), e.g. from its model zoo.")],
    out: Annotated[Path, typer.Option(help="The ftpdet checkpoint to write (use it as --teacher).")],
    config: Annotated[Optional[str], typer.Option(help="An ftpdet config describing the model (default: read "
                                                       "from the checkpoint's tensors).")] = None,
    ann: Annotated[Optional[Path], typer.Option(help="A COCO annotation file of the data to distil on: category "
                                                     "ids by class name.")] = None,
    overrides: SetOption = None,
) -> None:
    """An mmdetection GFL model (ResNet-18/34/50/101, FPN, GFL head) as an ftpdet checkpoint with the same outputs."""
    from ftpdet.import_mmdet import import_mmdet

    ensure_writable(out.parent)
    s = import_mmdet(checkpoint, out, config=config, ann=ann, overrides=overrides or [])
    order = ", class outputs reordered to the file's ids" if s["reordered"] else ""
    typer.echo(f"saved {s['out']}: GFL {s['backbone']}, {s['classes']} classes, {s['params_m']:.1f} M params{order}; "
               f"distil from it with --teacher {s['out']}")


@viz_app.command("temperature")
@friendly
def viz_temperature(
    checkpoint: Annotated[Path, typer.Argument(help="Student checkpoint (its config gives the DLT mode).")],
    image: Annotated[Path, typer.Argument(help="An image file.")],
    teacher: Annotated[Path, typer.Option(help="Teacher checkpoint.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    mode: Annotated[Optional[str], typer.Option(help="DLT mode to show: std | entropy | quality | sharpness "
                                                "(default: the student's).")] = None,
    ann: Annotated[Optional[Path], typer.Option(help="The COCO annotation file that lists the image: the histogram "
                                                "then splits positives, near-positives and background.")] = None,
) -> None:
    """Per FPN level: heatmaps of the DLT temperature (teacher's, and student's own in per-side modes) and of the PD
    location weights over the image; below, a histogram of the temperatures by region."""
    from ftpdet.methods.temperature import DLT_MODES
    from ftpdet.viz import plot_temperature

    if mode is not None and mode not in DLT_MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(DLT_MODES)}, not {mode!r}")
    typer.echo(f"saved {plot_temperature(checkpoint, teacher, image, out, mode, ann)}")


def check_preset(preset: str) -> None:
    from ftpdet.bench.presets import PRESETS

    if preset not in PRESETS:
        raise typer.BadParameter(f"--preset must be one of {', '.join(PRESETS)}, not {preset!r}")


def default_bench_dir(preset: str, dataset: str) -> Path:
    """runs/bench/PRESET for the shapes, runs/bench/PRESET-DATASET for another built-in dataset."""
    return Path("runs/bench") / (preset if dataset == "shapes" else f"{preset}-{dataset}")


@bench_app.command("accuracy")
@friendly
def bench_accuracy(
    preset: Annotated[str, typer.Option(help="lab (the default: CPU, 5 paired seeds) | smoke (pipeline check) | quick (the earlier CPU regime) | full (GPU or a long run).")] = "lab",
    seeds: Annotated[Optional[int], typer.Option(min=1, help="Seeds of the main comparison (default: the preset's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/bench/PRESET); rerun to resume.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="A COCO-format dataset laid out as `data synth` writes it.")] = None,
    dataset: Annotated[str, typer.Option(help="The built-in dataset when no --data: shapes | pictograms (default run "
                                         "directory runs/bench/PRESET-pictograms).")] = "shapes",
    teacher_config: Annotated[Optional[str], typer.Option(help="Main teacher config (YAML path or builtin name).")] = None,
    hetero_teacher_config: Annotated[Optional[str], typer.Option(help="Teacher of the heterogeneous pair.")] = None,
    student_config: Annotated[Optional[str], typer.Option(help="Student config (YAML path or builtin name).")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Also publish here, e.g. docs/benchmarks.md (results JSON and plots beside it; the JSON is updated after every run).")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only these parts: main | hetero | ablation | tau | plateau "
                                                      "| unlabeled (repeatable; without --only, all but unlabeled, "
                                                      "which is a regime of its own: docs/unlabeled.md); the other "
                                                      "tables of --out are kept.")] = None,
    reuse: Annotated[Optional[list[Path]], typer.Option(help="A results JSON (e.g. a committed docs/benchmarks/"
                                                        "accuracy.json) whose finished runs are reused by key "
                                                        "(repeatable; --report's own JSON is always read).")] = None,
) -> None:
    """Teacher, plain student and every method over paired seeds, plus FTPD's ablation, PD positions, LD's tau
    sweep and a heterogeneous pair. Finished runs are reused; an interrupted benchmark continues where it stopped."""
    from ftpdet.bench.accuracy import AccuracyBench
    from ftpdet.bench.presets import PRESETS
    from ftpdet.bench.report import assets_dir, publish

    check_preset(preset)
    if SMOKE:
        smoke_note(f"benchmark preset {preset}")
        preset, seeds = "smoke", None
    out = out or default_bench_dir(preset, dataset)
    reused = [*(reuse or []), *([assets_dir(report) / "accuracy.json"] if report is not None else [])]
    bench = AccuracyBench(PRESETS[preset].with_seeds(seeds), out, data=data, teacher_config=teacher_config,
                          hetero_teacher_config=hetero_teacher_config, student_config=student_config,
                          command="ftpdet " + " ".join(sys.argv[1:]), only=tuple(only or ()), reuse=tuple(reused),
                          mirror=assets_dir(report) / "accuracy.json" if report is not None else None,
                          dataset=dataset)
    bench()
    own = publish(out / "results.json", out / "benchmarks.md", "accuracy.json")
    typer.echo(f"results: {out / 'results.json'}; report: {own}")
    if report is not None:
        typer.echo(f"published: {publish(out / 'results.json', report, 'accuracy.json')}")


@bench_app.command("variant")
@friendly
def bench_variant(
    method: Annotated[str, typer.Argument(help="The method to vary, e.g. ftpd.")],
    set_: SetOption = None,
    preset: Annotated[str, typer.Option(help="The benchmark whose teacher, data, schedule and seeds are used.")] = "lab",
    seeds: Annotated[Optional[int], typer.Option(min=1, help="Paired seeds (default: the preset's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="The benchmark's run directory (default runs/bench/PRESET).")] = None,
    on: Annotated[Optional[list[str]], typer.Option("--on", help="An override for both sides, e.g. to compare "
                                                    "the change with a part switched off (repeatable).")] = None,
    teacher: Annotated[str, typer.Option(help="The benchmark's teacher: main | hetero (the heterogeneous pair).")] = "main",
    dataset: Annotated[str, typer.Option(help="The built-in dataset: shapes | pictograms.")] = "shapes",
    baselines: Annotated[Optional[list[str]], typer.Option("--against", help="Also pair the variant with this method at "
                                                         "its defaults, e.g. the best baseline (repeatable).")] = None,
) -> None:
    """A method with --set overrides against the same method without them (at its defaults, or with the --on
    overrides on both sides), per paired seed, inside an accuracy benchmark's directory (its runs are reused): try
    a change before making it a default."""
    from ftpdet.bench.accuracy import AccuracyBench
    from ftpdet.bench.presets import PRESETS
    from ftpdet.bench.tables import beats, interval
    from ftpdet.methods import parse_method

    check_preset(preset)
    for name in (method, *(baselines or ())):
        parse_method(name)
    if teacher not in ("main", "hetero"):
        raise typer.BadParameter(f"--teacher must be main or hetero, not {teacher!r}")
    if not set_:
        raise typer.BadParameter("give at least one --set override: the variant is the method at its defaults plus these")
    if SMOKE:
        smoke_note(f"benchmark preset {preset}")
        preset, seeds = "smoke", None
    p = PRESETS[preset].with_seeds(seeds)
    bench = AccuracyBench(p, out or default_bench_dir(preset, dataset), dataset=dataset)
    rows = bench.variant(method, tuple(set_), p.seeds, tuple(on or ()), teacher, tuple(baselines or ()))
    against = f"with {' '.join(on)}" if on else "at its defaults"
    typer.echo(f"\n{method} {' '.join(set_)} against {method} {against} (AP %, preset {preset}, {teacher} teacher):")
    for r in rows:
        typer.echo(f"  seed {r['seed']}: {r['AP']:.2f} vs {r['base_AP']:.2f} ({r['difference']:+.2f})")
    diffs = [r["difference"] for r in rows]
    verdicts = {"yes": "better (interval above 0)", "no": "worse (interval below 0)",
                "not resolved": "not resolved (the interval holds 0)"}
    verdict = verdicts[beats(diffs)]
    typer.echo(f"  paired difference: {interval(diffs)} (95% interval) over {len(rows)} seed(s): {verdict}")

    def minus(what: str, aps: list[float]) -> None:
        """The variant minus another run of the same seeds (their APs listed): the paired interval and verdict."""
        d = [r["AP"] - ap for r, ap in zip(rows, aps)]
        listed = ", ".join(f"{ap:.2f}" for ap in aps)
        typer.echo(f"  the variant minus {what} ({listed}): {interval(d)}: {verdicts[beats(d)]}")

    minus("the plain student", [r["student_AP"] for r in rows])
    for other in baselines or ():
        minus(f"{other} at its defaults", [r["against"][other] for r in rows])


@bench_app.command("profile")
@friendly
def bench_profile(
    preset: Annotated[str, typer.Option(help="Models and input size come from this preset.")] = "lab",
    method: Annotated[str, typer.Option(help="The distillation step profiled beside the plain student step.")] = "ftpd",
    iters: Annotated[int, typer.Option(min=1, help="Steps per timed round and under the profiler.")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Timed rounds without the profiler; the median counts.")] = 3,
    student_set: Annotated[Optional[list[str]], typer.Option("--student-set", help="Override in the student's config, "
                                                             "e.g. train.amp=bf16 (repeatable).")] = None,
    teacher_set: Annotated[Optional[list[str]], typer.Option("--teacher-set", help="Override in the teacher's config "
                                                             "(repeatable).")] = None,
    teacher_config: Annotated[Optional[str], typer.Option(help="Another teacher config than the preset's, e.g. "
                                                          "demo_teacher (the heterogeneous pair's).")] = None,
    out: Annotated[Path, typer.Option(help="Where profile.json goes.")] = Path("runs/bench/profile"),
) -> None:
    """Where a training step's time goes: data, teacher forward, student forward, assignment and GFL losses,
    distillation terms, backward, optimizer, weight average; a plain student step and a distillation step."""
    from ftpdet.bench.presets import PRESETS
    from ftpdet.bench.profile import profile_steps
    from ftpdet.methods import check_method

    check_preset(preset)
    check_method(method)
    if SMOKE:
        smoke_note("step profile")
        preset, iters, rounds = "smoke", 1, 1
    path = profile_steps(PRESETS[preset], out, method, iters, rounds, tuple(student_set or ()), tuple(teacher_set or ()),
                         command="ftpdet " + " ".join(sys.argv[1:]), teacher_config=teacher_config)
    typer.echo(f"results: {path}")


@bench_app.command("precision")
def bench_precision(
    configs: Annotated[Optional[list[str]], typer.Argument(help="Configs (builtin names or YAML files).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Images per pass.")] = 16,
    image_size: Annotated[int, typer.Option(min=32, help="Input side in pixels.")] = 128,
    rounds: Annotated[int, typer.Option(min=1, help="Timed passes per option, taken in turn; the fastest counts.")] = 3,
    out: Annotated[Path, typer.Option(help="Where precision.json goes.")] = Path("runs/bench/precision"),
) -> None:
    """Every precision and memory format of each model on this CPU, timed in turn, beside what train.amp auto picks
    here (bf16 included where it is emulated, to show its cost)."""
    from ftpdet.bench.precision import precision_table

    if SMOKE:
        smoke_note("precision table")
        batch, image_size, rounds = 2, 64, 1
    names = configs or ["demo_teacher", "bench_teacher", "demo_student"]
    path = precision_table(names, out, batch, image_size, rounds, command="ftpdet " + " ".join(sys.argv[1:]))
    typer.echo(f"results: {path}")


@bench_app.command("eval-noise")
@friendly
def bench_eval_noise(
    checkpoints: Annotated[list[Path], typer.Argument(help="One checkpoint, or two to see the noise of their difference.")],
    data: Annotated[Path, typer.Option(help="A dataset root laid out as `data synth` writes it; its val split is used.")],
    replicates: Annotated[int, typer.Option(min=2, help="Bootstrap resamplings of the validation images.")] = 200,
) -> None:
    """Evaluation noise: the spread of AP (and of a paired difference) over bootstrap resamplings of the
    validation images, to compare with the seed-to-seed spread."""
    from ftpdet.bench.noise import eval_noise

    if SMOKE:
        replicates = min(replicates, 5)
    r = eval_noise(checkpoints, data / "annotations" / "instances_val.json", data / "val", replicates)
    for m in r["models"]:
        typer.echo(f"{m['checkpoint']}: AP {m['AP']:.2f}, evaluation noise (bootstrap std over {r['replicates']} "
                   f"resamplings of {r['images']} images) {m['bootstrap_std']:.2f}")
    if "difference" in r:
        d = r["difference"]
        typer.echo(f"difference A - B: {d['AP']:+.2f} AP, evaluation noise {d['bootstrap_std']:.2f}")


@bench_app.command("speed")
@friendly
def bench_speed(
    preset: Annotated[str, typer.Option(help="Models and input size come from this preset.")] = "lab",
    iters: Annotated[int, typer.Option(min=1, help="Iterations per round and step kind.")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved rounds; the median round counts.")] = 5,
    out: Annotated[Path, typer.Option(help="Where speed.json goes.")] = Path("runs/bench/speed"),
    teacher: Annotated[Optional[Path], typer.Option(help="Trained teacher checkpoint (default: random weights).")] = None,
    student: Annotated[Optional[Path], typer.Option(help="Trained student checkpoint, for realistic inference.")] = None,
    from_bench: Annotated[Optional[Path], typer.Option(help="Take --teacher and --student from an accuracy benchmark's "
                                                       "directory (its main teacher, its seed-0 plain student).")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Also publish here, e.g. docs/benchmarks.md.")] = None,
    unlabeled: Annotated[bool, typer.Option(help="Also time steps with as many unlabeled images as labeled ones, for "
                                            "pseudo and the methods of the unlabeled part, against their own floor.")] = False,
) -> None:
    """Per-iteration time of each method's distillation step over the floor (student step + teacher forward),
    measured in one process, and inference images/s of teacher and student (PyTorch and ONNX Runtime)."""
    from ftpdet.bench.presets import PRESETS
    from ftpdet.bench.report import publish
    from ftpdet.bench.speed import run_speed

    check_preset(preset)
    if from_bench is not None:
        from ftpdet.bench.accuracy import trained_pair

        teacher, student = trained_pair(from_bench)
    if SMOKE:
        smoke_note("speed benchmark")
        preset, iters, rounds = "smoke", 1, 1
    from ftpdet.bench.presets import UNLABELED_METHODS

    path = run_speed(PRESETS[preset], out, iters=iters, rounds=rounds, teacher=teacher, student=student,
                     command="ftpdet " + " ".join(sys.argv[1:]), unlabeled_methods=UNLABELED_METHODS if unlabeled else ())
    typer.echo(f"results: {path}")
    if report is not None:
        typer.echo(f"published: {publish(path, report, 'speed.json')}")


@bench_app.command("report")
@friendly
def bench_report(
    report: Annotated[Path, typer.Argument(help="The report to regenerate, e.g. docs/benchmarks.md.")] = Path("docs/benchmarks.md"),
) -> None:
    """Regenerate the report and its plots from the results JSON beside it (nothing is trained)."""
    from ftpdet.bench.report import assets_dir, write_report

    if not assets_dir(report).is_dir():
        raise FtpdetError(f"{assets_dir(report)}: no results next to the report; run `ftpdet bench accuracy --report {report}` first")
    typer.echo(f"wrote {write_report(report)}")


@app.command("demo")
@friendly
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Demo directory.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option(help="A tiny dataset and schedule (a smoke test, not a result).")] = False,
) -> None:
    """Built-in dataset -> teacher -> small student -> side-by-side table, plots and predictions."""
    from ftpdet.demo import run_demo

    smoke_note("demo")
    run_demo(out, quick=quick or SMOKE)


def main() -> None:
    app(prog_name="ftpdet")


if __name__ == "__main__":
    sys.exit(main())
