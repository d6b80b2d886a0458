"""The report's markdown tables, each a list of lines, from a results JSON (stats.Results) or speed.json."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from ftpdet.bench.presets import (BASELINES, CEILING_LABEL, PATIENCE_METHODS, PD_ONLY_LABEL, PLATEAU_LABEL,
                                  UNLABELED_METHODS)
from ftpdet.bench.stats import WITH_UNLABELED, Results, ci95, closure, mean_std, paired, resolved, round_ratios
from ftpdet.engine.evaluate import METRIC_KEYS


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


def interval(d: list[float]) -> str:
    """'+0.39 [-0.78, +1.56]': the mean paired difference and its 95% interval (the mean alone for one seed)."""
    m, low, high = ci95(d)
    return f"{m:+.2f}" if len(d) < 2 else f"{m:+.2f} [{low:+.2f}, {high:+.2f}]"


def difference_cells(d: list[float]) -> str:
    """Three table cells for paired differences: per seed, the mean with its 95% interval, and whether the
    interval excludes 0."""
    return f"{', '.join(f'{x:+.2f}' for x in d)} | {interval(d)} | {'yes' if resolved(d) else 'no'}"


def _metric_cells(res: Results, row: dict | None, keys: tuple[str, ...]) -> list[str]:
    return [fmt(list(res.values(row, k).values())) for k in keys]


def _present_metrics(res: Results) -> tuple[str, ...]:
    """Drop a size bucket that reads 0 everywhere (no object of that size in the validation set)."""
    return tuple(k for k in METRIC_KEYS if any(r.get(k, 0) > 0 for r in res.data["records"] if r["status"] == "done"))


def comparison_table(res: Results, table: str, teacher_role: str, title_col: str = "method") -> list[str]:
    """Rows of `table` against its plain student: metrics, paired gain, gap closure, step-time ratio."""
    keys = _present_metrics(res)
    base = res.values(res.row(table, "student") or res.row("main", "student"))
    teacher = res.teacher_ap(teacher_role)
    lines = [
        f"| {title_col} | seeds | " + " | ".join(keys) + " | gain over student, paired [95% interval] | gap closed | step time / student |",
        "|---|---|" + "---|" * len(keys) + "---|---|---|",
    ]
    t = res.data["teachers"].get(teacher_role)
    if t:
        lines.append(f"| teacher ({t['backbone']}, {t['params_m']:.2f} M) | 1 | "
                     + " | ".join(f"{t[k]:.2f}" for k in keys) + " | | | |")
    for row in res.rows(table):
        recs = res.records(row)
        if not recs:
            lines.append(f"| {row['label']} | 0 | " + " | ".join("n/a" for _ in keys) + " | | | |")
            continue
        vals = res.values(row)
        is_base = row["method"] == "student" and row["label"] == "student"  # (the all-labels ceiling is a student too)
        gain = "" if is_base else interval(paired(vals, base))
        c = None if is_base else closure(vals, base, teacher)
        ratios = [r["step_time_ratio"] for r in recs if "step_time_ratio" in r]
        label = f"{row['label']} ({res.data['student_params_m']:.2f} M)" if is_base else row["label"]
        lines.append(f"| {label} | {len(recs)} | " + " | ".join(_metric_cells(res, row, keys))
                     + f" | {gain} | {'' if c is None else f'{100 * c:.0f}%'} | "
                     + (f"{np.mean(ratios):.2f}" if ratios else "") + " |")
    return lines


DIFFERENCE_HEAD = "per seed | mean [95% interval] | resolved? |"


def versus_baselines(res: Results) -> list[str]:
    """FTPD minus each baseline, per seed, with the 95% interval of the paired difference."""
    ftpd = res.values(res.row("main", "ftpd"))
    lines = [f"| FTPD minus | {DIFFERENCE_HEAD}", "|---|---|---|---|"]
    for name in BASELINES:
        d = paired(ftpd, res.values(res.row("main", name)))
        if d:
            lines.append(f"| {name} | {difference_cells(d)} |")
    return lines


def term_table(res: Results, table: str) -> list[str]:
    """Each row's loss terms in its last epoch, weighted as the optimiser summed them, mean over the seeds whose
    records carry the term log (`terms`; runs reused from before it have none): what each method optimised."""
    lines = ["| method | seeds logged | total | GFL terms | distillation terms |", "|---|---|---|---|---|"]
    missing = []
    for row in res.rows(table):
        logged = [r["terms"] for r in res.records(row) if r.get("terms")]
        if not logged:
            missing.append(row["label"])
            continue
        names = sorted({k for t in logged for k in t if not k.endswith("_raw") and k != "loss"})

        def mean(k: str) -> float:
            return float(np.mean([t[k] for t in logged if k in t]))

        def cells(prefix: str) -> str:
            return ", ".join(f"{k.removeprefix(prefix)} {mean(k):.3f}" for k in names if k.startswith(prefix))

        lines.append(f"| {row['label']} | {len(logged)} | {mean('loss'):.3f} | {cells('loss_')} | {cells('distill_')} |")
    if len(lines) == 2:
        return ["No run of this table carries the per-term log yet (each was trained before records kept it)."]
    if missing:
        lines += ["", f"Not logged (trained before records kept the terms): {', '.join(missing)}."]
    return lines


# (part, with it, without it): rows of the ablation table that differ by that part alone
PART_EFFECTS = (
    ("DLT, given PD", "PD + DLT", "PD"),
    ("CTF, given PD", "PD + CTF", "PD"),
    ("DLT, given PD + CTF", "PD + DLT + CTF (FTPD)", "PD + CTF"),
    ("CTF, given PD + DLT", "PD + DLT + CTF (FTPD)", "PD + DLT"),
    ("PKD, given FTPD", "FTPD + PKD", "PD + DLT + CTF (FTPD)"),
)


def part_effects(res: Results) -> list[str]:
    """What switching one part on does, per seed: the paired difference of two ablation rows."""
    lines = [f"| switching on | {DIFFERENCE_HEAD}", "|---|---|---|---|"]
    for name, on, off in PART_EFFECTS:
        d = paired(res.values(res.row("ablation", on)), res.values(res.row("ablation", off)))
        if d:
            lines.append(f"| {name} | {difference_cells(d)} |")
    return lines


def simple_table(res: Results, table: str, label_col: str) -> list[str]:
    keys = ("AP", "AP50", "AP75")
    lines = [f"| {label_col} | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in res.rows(table):
        lines.append(f"| {row['label']} | {len(res.records(row))} | " + " | ".join(_metric_cells(res, row, keys)) + " |")
    return lines


def is_earlier(res: Results, table: str) -> bool:
    """Whether `table` was measured at FTPD's earlier defaults: it has FTPD rows and none of them holds a run of the
    main table's FTPD (a change of defaults re-keys every FTPD run; the table keeps its runs until it is rerun)."""
    main = set(res.row("main", "ftpd")["keys"]) if res.row("main", "ftpd") else set()
    rows = [row for row in res.rows(table) if row["method"] == "ftpd"]
    return bool(main and rows and not any(main & set(row["keys"]) for row in rows))


def logged_terms(res: Results, row: dict | None) -> list[frozenset[str]]:
    """The names of the loss terms each run of `row` logged (runs from before records kept the log: empty)."""
    return [frozenset(r.get("terms") or ()) for r in res.records(row)] if row else []


def unmatched_ftpd(res: Results, table: str) -> bool:
    """Whether `table`'s FTPD runs, trained with another teacher than the main table's (so sharing no key with it),
    are not shown to run the main table's FTPD: they logged other loss terms than its runs, or none. A part switched
    on or off adds or removes its term, so other names mean other settings (e.g. earlier defaults); the same names do
    not prove the same settings, and then nothing is said."""
    main = set(logged_terms(res, res.row("main", "ftpd"))) - {frozenset()}
    here = logged_terms(res, res.row(table, "ftpd"))
    return bool(main and here and any(names not in main for names in here))


def unmatched_note(res: Results, table: str, part: str) -> list[str]:
    """A line saying a table's FTPD runs are not shown to be the main table's FTPD (empty when they are)."""
    if not unmatched_ftpd(res, table):
        return []
    return ["", "*FTPD's runs here are not shown to run the main table's FTPD: they logged other loss terms, or none "
                "(trained before records kept them, at earlier defaults or code). `ftpdet bench accuracy --only "
                f"{part}` reruns them at the current ones.*"]


def earlier_note(res: Results, table: str, part: str) -> list[str]:
    """A line saying a table predates FTPD's current defaults (empty when it does not)."""
    if not is_earlier(res, table):
        return []
    return ["", f"*Measured at FTPD's earlier defaults: no run here is the main table's FTPD. Its rows compare with "
                f"each other (the first row ran those defaults); `ftpdet bench accuracy --only {part}` reruns it at the "
                "current ones.*"]


def choice_table(res: Results, table: str, label_col: str) -> list[str]:
    """A table of FTPD variants that differ from its defaults in one choice, each with its paired difference from
    the defaults (the main table's FTPD, same seeds), so a default is kept or changed on per-seed evidence. A table
    measured at earlier defaults (`is_earlier`) is paired with its own first row, the defaults it ran at."""
    keys = ("AP", "AP50", "AP75")
    earlier = is_earlier(res, table)
    default_row = res.rows(table)[0] if earlier else res.row("main", "ftpd")
    default, default_keys = res.values(default_row), set(default_row["keys"]) if default_row else set()
    lines = [f"| {label_col} | seeds | " + " | ".join(keys) + " | minus defaults, per seed | mean [95% interval] | resolved? |",
             "|---|---|" + "---|" * len(keys) + "---|---|---|"]
    for row in res.rows(table):
        cells = " | ".join(_metric_cells(res, row, keys))
        if default_keys and set(row["keys"]) <= default_keys:  # the same runs as FTPD's defaults
            which = "the earlier defaults" if earlier else "the defaults"
            lines.append(f"| {row['label']} | {len(res.records(row))} | {cells} | ({which}) | | |")
            continue
        d = paired(res.values(row), default)
        lines.append(f"| {row['label']} | {len(res.records(row))} | {cells} | {difference_cells(d) if d else ' | | '} |")
    return lines


def regime(res: Results) -> list[str]:
    """The regime's own properties (docs/sizing.md), measured on this benchmark's runs: has the plain student
    plateaued (its run at twice the schedule, paired per seed), is the teacher 5-15 AP above it, and how widely do the
    per-seed differences between two methods of the main comparison spread (their std, over every pair of rows)."""
    lines = ["| property | wanted | measured | met? |", "|---|---|---|---|"]
    base = res.values(res.row("main", "student"))
    d = paired(res.values(res.row("plateau", PLATEAU_LABEL)), base)
    if d:
        m, low, high = ci95(d)
        met = ("yes" if high < 1 else "no" if low >= 1 else "mean only, interval reaches 1") if len(d) > 1 else \
            ("yes (one seed)" if m < 1 else "no (one seed)")
        lines.append(f"| the plain student has plateaued | twice its schedule adds < 1 AP | {interval(d)} AP over "
                     f"{len(d)} paired seed(s) | {met} |")
    teacher = res.teacher_ap("main")
    if teacher is not None and base:
        gap = teacher - mean_std(list(base.values()))[0]
        lines.append(f"| the teacher is a few AP above the student | 5-15 AP | {gap:.2f} AP | "
                     f"{'yes' if 5 <= gap <= 15 else 'no'} |")
    rows = [r for r in res.rows("main") if len(res.values(r)) > 1]
    spreads = [mean_std(dd)[1] for a, b in combinations(rows, 2)
               if len(dd := paired(res.values(a), res.values(b))) > 1]
    if spreads:
        lines.append(f"| paired differences between two methods are steady over seeds | std <= 0.4 AP | median "
                     f"{np.median(spreads):.2f}, largest {max(spreads):.2f} AP over {len(spreads)} pairs of rows | "
                     f"{'yes' if max(spreads) <= 0.4 else 'median only' if np.median(spreads) <= 0.4 else 'no'} |")
    return lines


def every_baseline_helps(res: Results) -> tuple[str, str, str]:
    """The lab's validity check: does every published baseline beat the plain student (interval above 0)?"""
    base = res.values(res.row("main", "student"))
    gains = {name: paired(res.values(res.row("main", name)), base) for name in BASELINES}
    gains = {k: v for k, v in gains.items() if v}
    if not gains:
        return "n/a", "n/a", "n/a"
    verdicts = {name: beats(d) for name, d in gains.items()}
    measured = "; ".join(f"{name} {interval(d)}" for name, d in gains.items())
    answer = "yes" if all(v == "yes" for v in verdicts.values()) else \
        "no: " + ", ".join(f"{n} ({v})" for n, v in verdicts.items() if v != "yes")
    return "Does every published baseline beat the plain student (a valid lab)?", measured, answer


TABLE_ORDER = ("main", "hetero", "plateau", "ablation", "position", "dlt", "ctf", "tau")


def time_table(res: Results) -> list[str]:
    """Where the benchmark's time went: wall-clock time per part, each run counted once (in the first table that
    holds it), from the records: training with its evaluations, plus any later evaluation on another validation set
    (eval_seconds); a reused run keeps the time it took when it ran."""
    lines = ["| part | runs | hours |", "|---|---|---|"]
    total = 0.0

    def add(name: str, records: list[dict]) -> None:
        nonlocal total
        seconds = sum(r.get("wall_seconds", 0.0) + r.get("eval_seconds", 0.0) for r in records)
        total += seconds
        lines.append(f"| {name} | {len(records)} | {seconds / 3600:.2f} |")

    for group in ("pretrain", "teachers"):
        done = [r for r in res.data.get(group, {}).values() if r.get("status") == "done"]
        if done:
            add({"pretrain": "pretraining (one run per model, reused)", "teachers": "teachers"}[group], done)
    seen: set[str] = set()
    for table in (*TABLE_ORDER, *(t for t in res.data["tables"] if t not in TABLE_ORDER)):
        records = [r for row in res.rows(table) for r in res.records(row) if r["key"] not in seen]
        seen |= {r["key"] for r in records}
        if records:
            add(f"{table} (student runs not in a table above)" if table != "main" else "main (student runs)", records)
    lines.append(f"| total | | {total / 3600:.2f} |")
    return lines


def beats(d: list[float]) -> str:
    """The answer to "does A beat B?" from the paired differences A - B: yes when their 95% interval lies above 0,
    no when it lies below 0, not resolved when it holds 0 (or with a single seed, which has no interval)."""
    if not d:
        return "n/a"
    if not resolved(d):
        return "not resolved"
    return "yes" if mean_std(d)[0] > 0 else "no"


def answers(res: Results, speed: dict | None) -> list[str]:
    """The questions a user brings to this benchmark, each answered from the runs, with the numbers."""
    lines = ["| question | measured | answer |", "|---|---|---|"]

    def add(question: str, measured: str, answer: str) -> None:
        lines.append(f"| {question} | {measured} | **{answer}** |")

    ftpd, base = res.values(res.row("main", "ftpd")), res.values(res.row("main", "student"))
    means = {name: res.mean("main", name) for name in BASELINES if res.mean("main", name) is not None}
    if ftpd and means:
        best = max(means, key=means.get)
        d = paired(ftpd, res.values(res.row("main", best)))
        add(f"Does FTPD beat the best baseline ({best}) on this data?",
            f"FTPD {res.mean('main', 'ftpd'):.2f} vs {best} {means[best]:.2f}: {interval(d)} over {len(d)} paired "
            "seed(s)", beats(d))
    else:
        add("Does FTPD beat the best baseline on this data?", "n/a", "n/a")
    c = closure(ftpd, base, res.teacher_ap("main"))
    add("How much of the gap between the plain student and the teacher does FTPD close?",
        "n/a" if c is None else f"student {res.mean('main', 'student'):.2f}, FTPD {res.mean('main', 'ftpd'):.2f}, "
        f"teacher {res.teacher_ap('main'):.2f}", "n/a" if c is None else f"{100 * c:.0f}%")
    taus = {row["label"]: res.mean("tau", row["label"]) for row in res.rows("tau") if row["method"] == "ld"}
    taus = {k: v for k, v in taus.items() if v is not None}
    no_tau = res.mean("tau", "FTPD (no tau)")
    question = "Does FTPD, with no temperature to set, beat LD at its best temperature of the sweep?"
    if taus and no_tau is not None:
        best_tau = max(taus, key=taus.get)
        spread = max(taus.values()) - min(taus.values())
        d = paired(res.values(res.row("tau", "FTPD (no tau)")), res.values(res.row("tau", best_tau)))
        which = "FTPD at its earlier defaults" if is_earlier(res, "tau") else "FTPD"
        add(question, f"{which} {no_tau:.2f} vs {best_tau} {taus[best_tau]:.2f}: {interval(d)} over {len(d)} paired "
            f"seed(s) (LD spread over tau: {spread:.2f} AP)", beats(d))
    else:
        add(question, "n/a", "n/a")
    # every baseline the heterogeneous pair ran (KD, LD and BCKD in the presets), in its table's order
    names = [row["label"] for row in res.rows("hetero") if row["label"] not in ("student", "ftpd")]
    baselines = ", ".join(n.upper() for n in names) or "KD and LD"
    question = f"With a teacher of another architecture, does FTPD beat {baselines}?"
    het = {name: res.values(res.row("hetero", name)) for name in ("ftpd", *names)}
    if names and all(het.values()):
        measured = ", ".join(f"{k.upper() if k != 'ftpd' else 'FTPD'} {res.mean('hetero', k):.2f}" for k in het)
        if unmatched_ftpd(res, "hetero"):
            measured = "FTPD's runs not shown to be at its current defaults (see the pair's table): " + measured
        verdicts = []
        for name in names:
            d = paired(het["ftpd"], het[name])
            measured += f"; FTPD - {name.upper()} {interval(d)}"
            verdicts.append(beats(d))
        answer = "yes" if all(v == "yes" for v in verdicts) else "no" if "no" in verdicts else "not resolved"
        add(question, measured, answer)
    else:
        add(question, "n/a", "n/a")
    add(*every_baseline_helps(res))
    ratio = (speed or {}).get("ratios", {}).get("ftpd")
    add("What does an FTPD training step cost, against a student step plus a teacher forward?",
        "n/a" if ratio is None else "speed benchmark below", "n/a" if ratio is None else f"{ratio:.2f} x")
    return lines


def speed_table(speed: dict[str, Any]) -> list[str]:
    """Each step kind's median time and its ratio to the floor; with the rounds' samples, the ratio paired by round
    too, with its 95% interval (stats.round_ratios): what a claim such as 'within 1.10x' is read from."""
    by_round = round_ratios(speed["samples_ms"]) if "samples_ms" in speed else {}  # (older results: medians only)
    lines = ["| step | ms / iteration | x floor | x floor, paired by round [95% interval] |", "|---|---|---|---|"]
    for name, ms in speed["ms"].items():
        ratio = speed["ratios"].get(name)
        r = by_round.get(name)
        paired_cell = "" if r is None else f"{r[0]:.2f}" + ("" if np.isnan(r[1]) else f" [{r[1]:.2f}, {r[2]:.2f}]")
        lines.append(f"| {name} | {ms:.1f} | {'' if ratio is None else f'{ratio:.2f}'} | {paired_cell} |")
    if speed.get("inference"):
        lines += ["", "Inference (forward + decode + NMS), images per second:", "",
                  "| model | runtime | images/s |", "|---|---|---|"]
        for row in speed["inference"]:
            lines.append(f"| {row['model']} | {row['runtime']} | {row['images_per_s']:.0f} |")
    return lines


STEP_BUDGET = 1.10  # the bound on an FTPD step with unlabeled images, in units of its floor


def within_budget(low: float, high: float, budget: float = STEP_BUDGET) -> str:
    """A cost paired by round against a budget: yes when its interval lies below, no when above, else not resolved."""
    if np.isnan(low):
        return "not resolved (one round has no interval)"
    return "yes" if high < budget else "no (above it)" if low > budget else "not resolved (the interval holds it)"


def unlabeled_answers(res: Results, speed: dict | None = None) -> list[str]:
    """The user's question first: with these unlabeled images, how much better is the student, and which method
    should be used? Each answer from paired seeds, in the words of `beats`; with a speed benchmark of steps with
    unlabeled images (`speed`), what an FTPD step costs against its floor, paired by round."""
    base = res.values(res.row("unlabeled", "student"))
    ftpd = res.values(res.row("unlabeled", "ftpd"))
    teacher = res.teacher_ap("main")
    rows = [r for r in res.rows("unlabeled") if r["label"] not in ("student", CEILING_LABEL) and res.values(r)]
    if not base or not rows:
        return ["No run of the unlabeled part has finished yet."]
    n = res.data["data"].get("num_unlabeled")
    planned = res.data.get("schedule", {}).get("seeds", 0)
    done = [len(res.values(r)) for r in res.rows("unlabeled")]
    done += [0] * (2 + len(UNLABELED_METHODS) - len(done))  # rows whose first run has not landed (student, ceiling)
    lines = []
    if min(done) < planned:  # a report written while the part runs: say so before any answer is read
        span = f"{min(done)}" if min(done) == max(done) else f"{min(done)}-{max(done)}"
        lines += [f"**Partial**: {sum(done)} of {planned * len(done)} runs of this table are done (each row "
                  f"{span} of {planned} seeds). An answer that is not resolved may change as seeds "
                  "land; a difference is never called level before every seed is in.", ""]
    lines += ["| question | measured | answer |", "|---|---|---|"]

    def add(question: str, measured: str, answer: str) -> None:
        lines.append(f"| {question} | {measured} | {answer} |")

    means = {r["label"]: float(np.mean(list(res.values(r).values()))) for r in rows}
    best = max(means, key=means.get)
    gain = paired(res.values(res.row("unlabeled", best)), base)
    c = closure(res.values(res.row("unlabeled", best)), base, teacher)
    add(f"How much better is the student with {n} unlabeled images?",
        f"best row {best}: {interval(gain)} AP over the labels-only student"
        + ("" if c is None else f", {100 * c:.0f}% of the teacher-student gap closed"),
        beats(gain))
    if ftpd:
        for other in ("pseudo", *BASELINES):
            d = paired(ftpd, res.values(res.row("unlabeled", other)))
            if d:  # (LD is not a row here: the unlabeled part runs UNLABELED_METHODS)
                seeds = f"{len(d)} paired seed{'s' * (len(d) > 1)}"
                add(f"Does FTPD beat {other} here?", f"FTPD - {other}: {interval(d)} over {seeds}", beats(d))
        ceiling = res.values(res.row("unlabeled", CEILING_LABEL))
        d = paired(ftpd, ceiling)
        if d:
            _, low, high = ci95(d)
            # "Level" is the absence of a difference: with fewer seeds than planned the interval is too wide to say it.
            reached = ("not resolved" if len(d) < 2 else "no (below it)" if high < 0 else "yes (above it)" if low > 0
                       else f"not resolved yet (the interval holds 0 with {len(d)} of {planned} seeds)"
                       if len(d) < planned else "level (the interval holds 0)")
            add("Does FTPD reach the student trained with every image labeled?",
                f"FTPD - all-labels student: {interval(d)}", reached)
    for method in PATIENCE_METHODS:
        d = paired(res.values(res.row("unlabeled_patience", f"{method}, 2x schedule")),
                   res.values(res.row("unlabeled", method)))
        if d:
            add(f"Does {method} keep gaining at twice the schedule?", f"2x - 1x: {interval(d)}", beats(d))
    kind = f"ftpd{WITH_UNLABELED}"  # the speed benchmark's FTPD step on mixed batches
    cost = round_ratios(speed["samples_ms"]).get(kind) if speed and "samples_ms" in speed else None
    if cost is not None:
        m, low, high = cost
        add(f"Does an FTPD step with unlabeled images stay within {STEP_BUDGET:.2f}x its floor (student step + "
            "teacher forward on the same images)?",
            f"{m:.2f}x [{low:.2f}, {high:.2f}], paired over {len(speed['samples_ms'][kind])} "
            "rounds (the speed benchmark below)", within_budget(low, high))
    return lines


def unlabeled_versus(res: Results) -> list[str]:
    """FTPD minus every other row of the unlabeled table, per seed."""
    ftpd = res.values(res.row("unlabeled", "ftpd"))
    lines = [f"| FTPD minus | {DIFFERENCE_HEAD}", "|---|---|---|---|"]
    for row in res.rows("unlabeled"):
        if row["label"] == "ftpd":
            continue
        d = paired(ftpd, res.values(row))
        if d:
            lines.append(f"| {row['label']} | {difference_cells(d)} |")
    return lines


def unlabeled_schedule_and_size(res: Results) -> list[str]:
    """What more steps and fewer unlabeled images do to pseudo and FTPD, per seed: twice the schedule minus the
    schedule, a quarter of the images minus all of them, and FTPD minus pseudo under each (the question a user with
    more time or fewer images asks). Empty without runs."""
    comparisons = []
    for table, row, what in (("unlabeled_patience", "2x schedule", "twice the schedule"),
                             ("unlabeled_size", "a quarter of the unlabeled images", "a quarter of the images")):
        changed = {m: res.values(res.row(table, f"{m}, {row}")) for m in PATIENCE_METHODS}
        comparisons += [(f"{m}: {what} minus the part's setting", changed[m], res.values(res.row("unlabeled", m)))
                        for m in PATIENCE_METHODS]
        comparisons.append((f"FTPD minus pseudo, both with {what}", changed["ftpd"], changed["pseudo"]))
    rows = [f"| {name} | {difference_cells(d)} |" for name, a, b in comparisons if (d := paired(a, b))]
    if not rows:
        return []
    return ["More steps, fewer images: pseudo and FTPD at twice the schedule and on a quarter of the "
            "unlabeled images, against the part's setting and against each other:", "",
            f"| comparison | {DIFFERENCE_HEAD}", "|---|---|---|---|", *rows, ""]


def unlabeled_parts(res: Results) -> list[str]:
    """What FTPD's two signals are worth on unlabeled images, per seed: PD's responses alone (FTPD with
    pd.assign=false), against the student and against `pseudo` (hard labels from the teacher, close to what
    pd.assign adds); and the teacher's labels added to PD's responses (FTPD minus PD alone). Empty without runs."""
    alone = res.values(res.row("unlabeled_parts", PD_ONLY_LABEL))
    if not alone:
        return []
    ftpd, pseudo = res.values(res.row("unlabeled", "ftpd")), res.values(res.row("unlabeled", "pseudo"))
    student = res.values(res.row("unlabeled", "student"))
    comparisons = [("PD's responses alone (FTPD, pd.assign=false) minus the labels-only student", alone, student),
                   ("PD's responses alone minus pseudo (the teacher's boxes as hard labels)", alone, pseudo),
                   ("the teacher's labels added to PD's responses (FTPD minus PD alone)", ftpd, alone)]
    lines = ["What FTPD's two signals are worth here: PD's responses at every location, and the teacher's boxes as "
             "labels (`pd.assign`; `pseudo` trains on those alone, placed by GFL's assigner instead of the "
             "task-aligned one):", "", f"| comparison | {DIFFERENCE_HEAD}", "|---|---|---|---|"]
    lines += [f"| {name} | {difference_cells(d)} |" for name, a, b in comparisons if (d := paired(a, b))]
    return lines + [""]
