"""docs/benchmarks.md from the benchmarks' results JSON: the user's questions answered first, then the tables
(stats.py computes, tables.py formats, plots.py draws; this module assembles the document).

The report is a pure function of the JSON files, so `ftpdet bench report` regenerates it from committed
results without training anything. Assets live beside the report: docs/benchmarks.md reads
docs/benchmarks/accuracy.json, docs/benchmarks/speed.json and the PNGs there, and appends
docs/benchmarks/notes.md (a person's reading of the tables) when it exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ftpdet.bench.plots import plot_bars, plot_curves, plot_tau, plot_unlabeled_size
from ftpdet.bench.stats import Results
from ftpdet.bench.tables import (answers, choice_table, comparison_table, earlier_note, part_effects, regime, simple_table,
                                 speed_table, term_table, time_table, unlabeled_answers, unlabeled_parts,
                                 unlabeled_schedule_and_size, unlabeled_versus, unmatched_note, versus_baselines)


def assets_dir(report: Path) -> Path:
    return report.with_suffix("")


def choice_seeds(data: dict[str, Any]) -> str:
    """How many seeds FTPD's ablation and its choices got; results written before the PD positions and DLT modes
    moved to the ablation's seeds (bench version 1) had them on the extra seeds."""
    s = data["schedule"]
    ablation = s.get("ablation_seeds", s["extra_seeds"])
    if data.get("version", 1) >= 2:
        return f"FTPD's ablation, PD positions and DLT modes over {ablation}"
    return f"FTPD's ablation over {ablation}; PD positions and DLT modes over {s['extra_seeds']}"


def other_seeds(data: dict[str, Any], res: Results) -> str:
    """'; FTPD's ablation ... over 3; heterogeneous pair over 5; tau sweep over 3' for the parts this benchmark ran."""
    s = data["schedule"]
    parts = [(("ablation", "position", "dlt", "ctf"), choice_seeds(data)),
             (("hetero",), f"heterogeneous pair over {s.get('hetero_seeds', s['extra_seeds'])}"),
             (("tau",), f"tau sweep over {s['extra_seeds']}")]
    return "".join(f"; {words}" for tables, words in parts if any(res.rows(t) for t in tables))


def pretraining(schedule: dict[str, Any]) -> str:
    """The sentence saying where backbones started (results from before pretraining existed: random weights)."""
    if not schedule.get("pretrain_epochs"):
        return "Backbones start from random weights. "
    return (f"Every backbone starts from a pretraining run of its model ({schedule['pretrain_epochs']} epochs on a "
            f"separate built-in set of {schedule['pretrain_num_train']} images, seed 1). ")


def remeasured(data: dict[str, Any]) -> str:
    """A sentence for runs evaluated again on this validation set after training on an earlier one (same weights:
    bench/accuracy.py), or nothing."""
    again = [r for r in [*data["records"], *data.get("teachers", {}).values()]
             if r.get("status") == "done" and r.get("history_eval_key") not in (None, r.get("eval_key"))]
    if not again:
        return ""
    earlier = sorted({r["history_eval_key"] for r in again})
    return (f"{len(again)} runs (teachers included) trained while the validation set was another one and were evaluated "
            f"again on this one from their final checkpoints (the same weights; an evaluation draws nothing from "
            f"training's random numbers); their curves over epochs stay as measured while training, on the earlier "
            f"set{'s' if len(earlier) > 1 else ''}. ")


def accuracy_section(data: dict[str, Any], assets: Path, speed: dict | None) -> list[str]:
    res = Results(data)
    rel = assets.name
    s, d = data["schedule"], data["data"]
    dataset = (f"the built-in {d.get('dataset') or 'shapes'} dataset ({d['num_train']} train / {d['num_val']} val images, "
               f"{d['image_size']} px)"
               if d["builtin"] else f"the COCO-format dataset in `{d['root']}` ({d['image_size']} px)")
    lines = [
        f"## Accuracy (preset `{data['preset']}`)",
        "",
        f"Produced by `{data['command']}` on {data['date']}, at commit {data.get('commit') or 'unknown'}, on "
        f"{data['machine']}. Data: {dataset}. {pretraining(s)}Teachers {s['teacher_epochs']} epochs; every student run "
        f"{s['student_epochs']} epochs, evaluated every {s['eval_every']}. Main comparison over {s['seeds']} paired "
        f"seeds (seed k: same student initialisation, data order and augmentation for every method)"
        f"{other_seeds(data, res)}. AP is COCO AP (%) of each "
        f"run's final checkpoint on the validation set; mean ± std (sample std) over seeds; a difference between two "
        f"runs is the mean of their per-seed differences with its 95% t-interval. {remeasured(data)}Results: "
        f"[`{rel}/accuracy.json`]({rel}/accuracy.json).",
        "",
    ]
    if not res.rows("main"):  # a sitting of other parts alone (e.g. --only unlabeled): their sections lead
        return lines + [*optional_sections(res, data, rel, speed), "### What the benchmark took", "",
                        "Wall-clock training time (evaluations included) on the machine above, one run after another:",
                        "", *time_table(res)] + _plots(res, assets, main=False)
    lines += [
        "### Does FTPD beat the baselines on this data?",
        "",
        "Each answer comes from paired seeds: the per-seed differences FTPD - X, their mean and its 95% t-interval "
        "over seeds, shown as mean [low, high]. **yes** when the interval lies above 0, **no** when it lies below "
        "0, **not resolved** when it holds 0 (one seed has no interval).",
        "",
        *answers(res, speed),
        "",
        "Gain over student: the mean of the per-seed differences from the plain student of the same seed, with its 95% "
        "interval. "
        "Gap closed = (method - student) / (teacher - student), from the means. Step time / student: each run's "
        "seconds per step over the plain student's, from the runs themselves (a noisy, shared-machine measure; the "
        "speed benchmark below is the careful one).",
        "",
        "### Can this regime tell methods apart?",
        "",
        "The properties the regime was chosen for (docs/sizing.md), measured on these runs; the plateau row pairs each "
        "plain student with the same seed's run at twice the schedule (`--only plateau`).",
        "",
        *regime(res),
        "",
        f"### Main comparison: {data['configs']['main']} teacher -> {data['configs']['student']} student",
        "",
        *comparison_table(res, "main", "main"),
        "",
        f"![AP by method]({rel}/bars.png)",
        "",
        f"![AP over epochs]({rel}/curves.png)",
        "",
        "### FTPD against each baseline, per seed",
        "",
        *versus_baselines(res),
        "",
        "What each method optimised: its loss terms in the last epoch (mean over logged steps, weighted as summed), "
        "mean over the seeds whose records carry this log; raw values are in the results JSON (`terms`).",
        "",
        *term_table(res, "main"),
        "",
        *optional_sections(res, data, rel, speed),
        "### What the benchmark took",
        "",
        "Wall-clock training time (evaluations included) on the machine above, one run after another:",
        "",
        *time_table(res),
    ]
    return lines + _plots(res, assets, main=True)


def _plots(res: Results, assets: Path, main: bool) -> list[str]:
    """Draw the figures the sections link to (nothing to add to the text: returns [])."""
    if main:
        plot_bars(res, assets / "bars.png")
        plot_curves(res, assets / "curves.png")
    if res.rows("tau"):
        plot_tau(res, assets / "tau.png")
    if res.rows("unlabeled"):
        plot_unlabeled_size(res, assets / "unlabeled.png")
    return []


def optional_sections(res: Results, data: dict[str, Any], rel: str, speed: dict | None = None) -> list[str]:
    """The tables of the parts besides the main comparison (`--only`), each when this benchmark ran it; the parts it
    did not run are named in one line instead of as empty tables."""
    sections = {
        "FTPD's ablation": ("ablation", [
            "### FTPD ablation",
            "",
            *comparison_table(res, "ablation", "main", "parts switched on"),
            *earlier_note(res, "ablation", "ablation"),
            "",
            "Each part's effect, paired per seed (resolved: the 95% interval excludes 0):",
            "",
            *part_effects(res),
            "",
        ]),
        "PD positions": ("position", [
            "### Where PD distils (`distill.ftpd.pd.position`), and whether it transfers the box (`pd.box`) and the "
            "teacher's labels (`pd.assign`)",
            "",
            *choice_table(res, "position", "position"),
            *earlier_note(res, "position", "ablation"),
            "",
        ]),
        "DLT modes": ("dlt", [
            "### How DLT sets the box temperature (`distill.ftpd.dlt.mode`)",
            "",
            *choice_table(res, "dlt", "DLT"),
            *earlier_note(res, "dlt", "ablation"),
            "",
        ]),
        "CTF modes": ("ctf", [
            "### How CTF distils classes (`distill.ftpd.ctf.mode`)",
            "",
            *choice_table(res, "ctf", "CTF"),
            *earlier_note(res, "ctf", "ablation"),
            "",
        ]),
        "LD's tau sweep": ("tau", [
            "### LD's temperature against FTPD's none",
            "",
            *simple_table(res, "tau", "run"),
            *earlier_note(res, "tau", "tau"),
            "",
            f"![tau sweep]({rel}/tau.png)",
            "",
        ]),
        "the heterogeneous pair": ("hetero", [
            f"### Heterogeneous pair: {data['configs']['hetero']} teacher -> {data['configs']['student']} student",
            "",
            *comparison_table(res, "hetero", "hetero"),
            *unmatched_note(res, "hetero", "hetero"),
            "",
            "Their loss terms in the last epoch, as above:",
            "",
            *term_table(res, "hetero"),
            "",
        ]),
        "the unlabeled images": ("unlabeled", [
            f"### Unlabeled images: {data['data'].get('num_unlabeled')} beside the labeled ones "
            f"({data['data'].get('unlabeled_ratio')} per labeled image in every step; docs/unlabeled.md)",
            "",
            "The user's question first: how much better is the student with these unlabeled images, and which method "
            "to use. Each answer comes from paired seeds: **yes** when the 95% t-interval of the per-seed differences "
            "lies above 0, **no** when below, **not resolved** when it holds 0 (one seed has no interval). The "
            "all-labels student is the ceiling: the same stream of images, each with its own label, and no teacher.",
            "",
            *unlabeled_answers(res, speed),
            "",
            *comparison_table(res, "unlabeled", "main"),
            "",
            "FTPD against every other row, per seed:",
            "",
            *unlabeled_versus(res),
            "",
            *unlabeled_parts(res),
            *unlabeled_schedule_and_size(res),
            f"![AP against the number of unlabeled images]({rel}/unlabeled.png)",
            "",
            "Their loss terms in the last epoch, as above:",
            "",
            *term_table(res, "unlabeled"),
            "",
        ]),
    }
    lines = [line for table, block in sections.values() if res.rows(table) for line in block]
    missing = [name for name, (table, _) in sections.items() if not res.rows(table)]
    if missing:
        lines += [f"Not measured in this benchmark: {', '.join(missing)} (`ftpdet bench accuracy --only ...` runs "
                  "them).", ""]
    return lines


def precision_words(speed: dict[str, Any]) -> str:
    """How each model ran; results from before per-model precision name one setting for both."""
    def words(p: dict[str, Any]) -> str:
        return ("bf16 autocast" if p["amp"] == "bf16" else "float32") + (", channels_last" if p["channels_last"] else "")

    if "precision" not in speed:
        return "bf16 autocast" if speed["amp"] == "bf16" else "float32"
    return f"student {words(speed['precision']['student'])}, teacher {words(speed['precision']['teacher'])}"


def speed_section(speed: dict[str, Any], assets: Path) -> list[str]:
    rel = assets.name
    return [
        "## Speed",
        "",
        f"Produced by `{speed['command']}` on {speed['date']}, at commit {speed.get('commit') or 'unknown'}, on "
        f"{speed['machine']}: batch {speed['batch_size']}, {speed['image_size']} px, "
        f"{precision_words(speed)}, median of {speed['rounds']} interleaved rounds "
        f"of {speed['iters']} iterations each, all in one process. Floor = plain student training step + teacher "
        f"no-grad forward; paired by round, each round's time over the floor's in the same round, with the 95% "
        f"interval over rounds (a cost is within a budget when the interval lies below it). "
        f"Results: [`{rel}/speed.json`]({rel}/speed.json).",
        "",
        *speed_table(speed),
    ]


def methods_link(report: Path) -> str:
    """' Methods: [...](...)': docs/distillation.md seen from the report's folder (docs/ or a folder below it)."""
    for rel in ("distillation.md", "../distillation.md"):
        if (report.parent / rel).is_file():
            return f" Methods: [distillation.md]({rel})."
    return ""


def write_report(report: str | Path) -> Path:
    """Rewrite `report` from the results JSON files in its assets directory."""
    report = Path(report)
    assets = assets_dir(report)
    acc_path, speed_path = assets / "accuracy.json", assets / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.exists() else None
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `ftpdet bench report {report}` from the JSON files in `{assets.name}/`; the commands that "
        f"produced them are named in each section.{methods_link(report)}",
        "",
    ]
    if acc_path.exists():
        lines += accuracy_section(json.loads(acc_path.read_text()), assets, speed) + [""]
    if speed is not None:
        lines += speed_section(speed, assets) + [""]
    notes = assets / "notes.md"  # hand-written reading of the tables above (kept apart: the rest is generated)
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    report.write_text("\n".join(lines))
    return report


def publish(results_json: Path, report: str | Path, name: str) -> Path:
    """Copy a benchmark's results JSON next to the report (as `name`) and regenerate the report."""
    assets = assets_dir(Path(report))
    assets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results_json, assets / name)
    return write_report(report)
