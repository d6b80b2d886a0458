"""The accuracy and speed benchmarks: the smoke preset end to end, reuse and resume, reproducibility, the report."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from ftpdet.bench.accuracy import AccuracyBench, eval_key, last_epoch_terms, plan_runs, run_key, training_modules
from ftpdet.bench.presets import CEILING_LABEL, MAIN_METHODS, PD_ONLY_LABEL, PRESETS, UNLABELED_METHODS
from ftpdet.bench.stats import Results, ci95, closure, paired, ratio_ci95, resolved, round_ratios
from ftpdet.bench.tables import (answers, choice_table, earlier_note, every_baseline_helps, regime, speed_table, time_table,
                                 unlabeled_answers, unlabeled_parts, unlabeled_schedule_and_size, unmatched_ftpd,
                                 unmatched_note)
from ftpdet.cli import app
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection
from ftpdet.engine.step import TrainStep
from ftpdet.engine.train import train
from tests.conftest import tiny_config

runner = CliRunner()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "smoke"
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_plan_covers_every_table_and_seed():
    specs = plan_runs(PRESETS["quick"], student_convs=1, teacher_convs=2)
    main = [s for s in specs if s.table == "main"]
    assert len(main) == 3 * (1 + len(MAIN_METHODS))
    assert {s.seed for s in main} == {0, 1, 2}
    for table in ("ablation", "position", "dlt", "ctf", "hetero"):  # each part, each default and the pair: paired seeds
        assert {s.seed for s in specs if s.table == table} == {0, 1, 2}, table
    assert {s.seed for s in specs if s.table == "tau"} == {0}
    assert [s.label for s in specs if s.table == "dlt" and s.seed == 0] == ["quality (default)", "entropy", "std",
                                                                            "sharpness", "off (KL at T = 1)"]
    assert [s.label for s in specs if s.table == "ctf" and s.seed == 0] == [
        "dense (default)", "dense + relation term", "relation", "binary", "standardized", "off (binary KL)"]
    assert [s.label for s in specs if s.table == "position" and s.seed == 0] == [
        "output", "0", "1", "PD without the box (pd.box=false)", "PD without the teacher's labels (pd.assign=false)"]
    assert [s.label for s in specs if s.table == "tau"][:5] == [f"LD tau={t}" for t in (1, 2, 5, 10, 20)]
    assert {s.method for s in specs if s.table == "hetero"} == {None, "kd", "ld", "bckd", "ftpd"}
    assert all(s.teacher == "hetero" for s in specs if s.table == "hetero" and s.method)


def test_lab_plan_is_the_budgeted_one():
    """The lab (the default preset): 5 paired seeds for the main comparison and the pair, 3 for the rest, every
    role starting from a pretrained backbone, numbers from the weight average."""
    lab = PRESETS["lab"]
    specs = plan_runs(lab, student_convs=1, teacher_convs=2)
    assert {s.seed for s in specs if s.table in ("main", "hetero")} == set(range(5))
    for table in ("ablation", "position", "dlt", "ctf", "tau"):
        assert {s.seed for s in specs if s.table == table} == {0, 1, 2}, table
    assert len([s for s in specs if s.table == "main"]) == 5 * (1 + len(MAIN_METHODS))
    assert lab.pretrain_epochs > 0 and "train.ema=0.999" in lab.common
    student = load_config(lab.student, [])
    teacher = load_config(lab.teacher, [])
    assert (student.model.backbone, student.model.width_mult) == ("mobilenet_v3_small", 1.0)
    assert teacher.model.backbone == "mobilenet_v3_large"


def test_the_unlabeled_part_is_planned_only_when_asked():
    """Rows: the plain student (the main table's run), the all-labels ceiling, pseudo and every method on 5 paired
    seeds; pseudo and FTPD at twice the schedule (5 seeds) and on a quarter of the unlabeled images (3)."""
    lab = PRESETS["lab"]
    assert not [s for s in plan_runs(lab, 1, 2) if s.data != "labeled"]  # a default sitting leaves it out
    specs = plan_runs(lab, 1, 2, only=("unlabeled",))
    rows = [s for s in specs if s.table == "unlabeled"]
    assert [s.label for s in rows if s.seed == 0] == ["student", CEILING_LABEL, *UNLABELED_METHODS]
    assert {s.seed for s in rows} == set(range(5))
    assert {(s.label, s.data) for s in rows if s.seed == 0} >= {("student", "labeled"), (CEILING_LABEL, "all_labels"),
                                                               ("ftpd", "unlabeled")}
    patience = [s for s in specs if s.table == "unlabeled_patience"]
    assert {s.method for s in patience} == {"pseudo", "ftpd"} and {s.seed for s in patience} == set(range(5))
    assert all(f"train.epochs={2 * lab.student_epochs}" in s.overrides for s in patience)
    size = [s for s in specs if s.table == "unlabeled_size"]
    assert {s.data for s in size} == {"unlabeled_quarter"} and {s.seed for s in size} == {0, 1, 2}
    parts = [s for s in specs if s.table == "unlabeled_parts"]  # FTPD's PD alone, on the same unlabeled images
    assert {(s.label, s.method, s.data, s.overrides) for s in parts} == {
        (PD_ONLY_LABEL, "ftpd", "unlabeled", ("distill.ftpd.pd.assign=false",))}
    assert {s.seed for s in parts} == {0, 1, 2}


def _unlabeled_results(aps: dict[str, list[float]], planned: int, parts: dict[str, list[float]] | None = None,
                       **more: dict[str, list[float]]) -> Results:
    """A results JSON of the unlabeled table (`parts`: the unlabeled_parts table; `more`: other tables by name): one
    record per row and seed, with these APs."""
    records, tables = [], {}
    for table, rows in (("unlabeled", aps), ("unlabeled_parts", parts or {}), *more.items()):
        for label, values in rows.items():
            keys = [f"{table}-{label}-{seed}" for seed in range(len(values))]
            records += [{"key": k, "status": "done", "seed": seed, "AP": ap} for seed, (k, ap) in enumerate(zip(keys, values))]
            tables.setdefault(table, []).append({"label": label, "keys": keys})
    return Results({"records": records, "tables": tables, "teachers": {"main": {"AP": 30.0}},
                    "data": {"num_unlabeled": 64}, "schedule": {"seeds": planned}})


def test_unlabeled_parts_tells_pd_responses_from_the_teachers_labels():
    """Per seed: PD alone - student, PD alone - pseudo, FTPD - PD alone; nothing before PD alone has a run."""
    aps = {"student": [10.0, 11.0, 12.0], "pseudo": [17.0, 18.0, 19.0], "ftpd": [18.0, 19.5, 19.0]}
    assert unlabeled_parts(_unlabeled_results(aps, planned=3)) == []
    lines = unlabeled_parts(_unlabeled_results(aps, planned=3, parts={PD_ONLY_LABEL: [15.0, 15.0, 16.0]}))
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines if line.startswith("| ") and "per seed" not in line}
    assert len(rows) == 3
    assert "| +5.00, +4.00, +4.00 | +4.33 [+2.90, +5.77] | yes |" in rows[
        "PD's responses alone (FTPD, pd.assign=false) minus the labels-only student"]
    assert "| -2.00, -3.00, -3.00 | -2.67 [-4.10, -1.23] | yes |" in rows[
        "PD's responses alone minus pseudo (the teacher's boxes as hard labels)"]
    assert "| +3.00, +4.50, +3.00 | +3.50 [+1.35, +5.65] | yes |" in rows[
        "the teacher's labels added to PD's responses (FTPD minus PD alone)"]


def test_schedule_and_size_compare_each_change_paired_and_ftpd_with_pseudo_under_it():
    """Per seed: 2x - 1x and a quarter - all for pseudo and FTPD, and FTPD - pseudo under each change; rows without
    runs are left out, and nothing is printed before the first run."""
    aps = {"student": [10.0, 11.0, 12.0], "pseudo": [17.0, 18.0, 19.0], "ftpd": [18.0, 19.5, 19.0]}
    assert unlabeled_schedule_and_size(_unlabeled_results(aps, planned=3)) == []
    res = _unlabeled_results(aps, planned=3, unlabeled_patience={"pseudo, 2x schedule": [19.0, 19.5, 21.0],
                                                                 "ftpd, 2x schedule": [20.0, 21.0, 20.5]},
                             unlabeled_size={"ftpd, a quarter of the unlabeled images": [18.0, 19.0]})
    lines = unlabeled_schedule_and_size(res)
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines if line.startswith("| ") and "per seed" not in line}
    assert len(rows) == 4  # no pseudo run on a quarter: neither its own row nor FTPD - pseudo there
    assert "| +2.00, +1.50, +2.00 | +1.83 [+1.12, +2.55] | yes |" in rows["pseudo: twice the schedule minus the part's setting"]
    assert "| +2.00, +1.50, +1.50 | +1.67 [+0.95, +2.38] | yes |" in rows["ftpd: twice the schedule minus the part's setting"]
    assert "| +1.00, +1.50, -0.50 | +0.67 [-1.92, +3.25] | no |" in rows["FTPD minus pseudo, both with twice the schedule"]
    assert "| +0.00, -0.50 | -0.25 [-3.43, +2.93] | no |" in rows["ftpd: a quarter of the images minus the part's setting"]


def test_the_ceiling_is_called_level_only_when_every_planned_seed_is_in():
    """FTPD - ceiling: -1, +1 (2 seeds) holds 0 with a wide interval. With 2 of 5 seeds that is no evidence of
    'level'; the same differences with every planned seed in (planned 2) are the issue's definition of level."""
    aps = {"student": [10.0, 10.0], CEILING_LABEL: [20.0, 20.0], "pseudo": [17.0, 18.0], "ftpd": [19.0, 21.0]}

    def ceiling_answer(lines: list[str]) -> str:
        return next(line for line in lines if "every image labeled" in line).rsplit("|", 2)[1].strip()

    partial = unlabeled_answers(_unlabeled_results(aps, planned=5))
    assert ceiling_answer(partial) == "not resolved yet (the interval holds 0 with 2 of 5 seeds)"
    # the rows not yet started count too (kd, crosskd, bckd, pkd, ftpd+pkd here): 9 rows of 5 seeds
    assert partial[0].startswith("**Partial**: 8 of 45 runs of this table are done (each row 0-2 of 5 seeds).")
    assert unlabeled_answers(_unlabeled_results(aps, planned=2))[0].startswith("**Partial**: 8 of 18 runs")
    every_row = {**aps, **{m: [15.0, 15.0] for m in UNLABELED_METHODS if m not in aps}}
    level_rows = unlabeled_answers(_unlabeled_results(every_row, planned=5))[0]  # every row at 2 seeds: no "2-2"
    assert level_rows.startswith("**Partial**: 18 of 45 runs of this table are done (each row 2 of 5 seeds).")
    complete = unlabeled_answers(_unlabeled_results(every_row, planned=2))
    assert ceiling_answer(complete) == "level (the interval holds 0)"
    assert not any("Partial" in line for line in complete)
    below = {**aps, "ftpd": [15.0, 15.2]}  # a resolved difference needs no more seeds to be reported
    assert ceiling_answer(unlabeled_answers(_unlabeled_results(below, planned=5))) == "no (below it)"


def test_the_unlabeled_answers_say_whether_an_ftpd_step_stays_within_its_budget():
    """From the speed benchmark's rounds, paired against the mixed floor: below 1.10 with its whole interval is yes,
    an interval holding 1.10 is not resolved, one above it is no; without a speed benchmark the row is absent."""
    aps = {"student": [10.0, 11.0], "pseudo": [17.0, 18.0], "ftpd": [18.0, 19.5]}
    res = _unlabeled_results(aps, planned=2)
    floor = {"student step (+ unlabeled)": [200.0, 200.0, 200.0], "teacher forward (+ unlabeled)": [100.0, 100.0, 100.0]}

    def cost(ftpd_ms: list[float]) -> str:
        speed = {"samples_ms": {**floor, "ftpd (+ unlabeled)": ftpd_ms}}
        return next(line for line in unlabeled_answers(res, speed) if "stay within 1.10x" in line)

    assert cost([315.0, 318.0, 312.0]).endswith("| 1.05x [1.03, 1.08], paired over 3 rounds (the speed benchmark below) | yes |")
    assert cost([315.0, 345.0, 330.0]).endswith("| not resolved (the interval holds it) |")
    assert cost([360.0, 363.0, 357.0]).endswith("| no (above it) |")
    assert not any("stay within" in line for line in unlabeled_answers(res))


def test_the_unlabeled_part_runs_every_row_and_reuses_the_labels_only_student(smoke, tmp_path):
    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(copy), "--only", "unlabeled"])
    assert res.exit_code == 0, res.output
    assert "built-in unlabeled images (shapes): 24" in res.output
    results = json.loads((copy / "results.json").read_text())
    r = Results(results)
    assert [row["label"] for row in r.rows("unlabeled")] == ["student", CEILING_LABEL, *UNLABELED_METHODS]
    assert r.row("unlabeled", "student")["keys"] == r.row("main", "student")["keys"]  # the same run, not retrained
    assert r.row("unlabeled", "ftpd")["keys"] != r.row("main", "ftpd")["keys"]
    size = r.row("unlabeled_size", "ftpd, a quarter of the unlabeled images")["keys"]
    assert size and size != r.row("unlabeled", "ftpd")["keys"]
    records = {rec["key"]: rec for rec in results["records"]}
    ceiling = records[r.row("unlabeled", CEILING_LABEL)["keys"][0]]
    assert ceiling["data"] == "all_labels" and ceiling["status"] == "done"
    pseudo = records[r.row("unlabeled", "pseudo")["keys"][0]]
    assert "distill_pseudo_qfl" in pseudo["terms"]
    assert results["data"]["num_unlabeled"] == 24
    assert len(json.loads((copy / "data" / "unlabeled_quarter.json").read_text())["images"]) == 6
    report = tmp_path / "docs" / "unlabeled.md"
    again = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(copy), "--only", "unlabeled",
                                "--report", str(report)])
    assert again.exit_code == 0 and "ftpdet train:" not in again.output and "ftpdet distill" not in again.output
    text = report.read_text()
    section = text[text.index("### Unlabeled images: 24 beside the labeled ones"):]
    # the user's question comes first, then the table with the ceiling's gain over the labels-only student
    assert section.index("How much better is the student with 24 unlabeled images?") < section.index("| teacher (")
    assert "Does FTPD beat pseudo here?" in section and f"| {CEILING_LABEL} | 1 |" in section
    assert (tmp_path / "docs" / "unlabeled" / "unlabeled.png").is_file()
    # A results JSON of this part alone leads with it: no empty blocks of the main comparison.
    alone = json.loads((tmp_path / "docs" / "unlabeled" / "accuracy.json").read_text())
    alone["tables"] = {k: v for k, v in alone["tables"].items() if k.startswith("unlabeled")}
    (tmp_path / "docs" / "unlabeled" / "accuracy.json").write_text(json.dumps(alone))
    assert runner.invoke(app, ["bench", "report", str(report)]).exit_code == 0
    text = report.read_text()
    assert "### Does FTPD beat the baselines" not in text and "### Main comparison" not in text
    assert text.index("### Unlabeled images") < text.index("### What the benchmark took")


def test_smoke_benchmark_writes_every_table_plot_and_record(smoke):
    out, output = smoke
    results = json.loads((out / "results.json").read_text())
    res = Results(results)
    for table in ("main", "ablation", "position", "dlt", "ctf", "tau", "hetero"):
        assert res.rows(table), table
    assert [r["label"] for r in res.rows("main")] == ["student", *MAIN_METHODS]
    for record in results["records"]:
        assert record["status"] == "done", record
        for key in ("method", "seed", "AP", "AP50", "AP75", "APs", "APm", "APl", "train_seconds", "step_time_ratio"):
            assert key in record, key
    # Shared cells are trained once: FTPD's defaults are the main row, the ablation's full row, PD at the outputs,
    # DLT quality and the tau table's FTPD row; the plain student serves both pairs.
    ftpd_key = res.row("main", "ftpd")["keys"][0]
    assert res.row("ablation", "PD + DLT + CTF (FTPD)")["keys"] == [ftpd_key] == res.row("position", "output")["keys"]
    assert res.row("dlt", "quality (default)")["keys"] == [ftpd_key] == res.row("tau", "FTPD (no tau)")["keys"]
    assert res.row("position", "0")["keys"] != [ftpd_key]
    assert res.row("dlt", "off (KL at T = 1)")["keys"] == res.row("ablation", "PD + CTF")["keys"]
    assert res.row("hetero", "student")["keys"] == res.row("main", "student")["keys"]
    assert res.row("hetero", "ftpd")["keys"] != [ftpd_key]  # another teacher, another run
    assert len({r["key"] for r in results["records"]}) == len(results["records"])
    # The per-term log: FTPD's record carries its default terms (no relation term: weighed 0), the student's none.
    by_key = {r["key"]: r for r in results["records"]}
    ftpd_terms = by_key[ftpd_key]["terms"]
    assert {"distill_ftpd_cls", "distill_ftpd_box", "distill_ftpd_giou", "loss_qfl", "loss"} <= set(ftpd_terms)
    assert "distill_ftpd_rel" not in ftpd_terms and ftpd_terms["distill_ftpd_giou"] > 0
    student_terms = by_key[res.row("main", "student")["keys"][0]]["terms"]
    assert student_terms["loss_qfl"] > 0 and not any(k.startswith("distill") for k in student_terms)
    assert set(results["teachers"]) == {"main", "hetero"}
    assert results["teachers"]["main"]["backbone"] != results["teachers"]["hetero"]["backbone"]
    report = (out / "benchmarks.md").read_text()
    assert "| method | seeds logged | total | GFL terms | distillation terms |" in report
    assert "ftpd_giou" in report
    for heading in ("### Main comparison", "### FTPD against each baseline", "### FTPD ablation", "### Where PD distils", "### How DLT sets",
                    "### LD's temperature", "### Heterogeneous pair", "### Does FTPD beat the baselines on this data?"):
        assert heading in report, heading
    for png in ("bars.png", "curves.png", "tau.png"):
        assert (out / "benchmarks" / png).stat().st_size > 5000, png


def test_rerun_reuses_everything_and_a_lost_run_is_retrained_identically(smoke, tmp_path):
    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = json.loads((copy / "results.json").read_text())
    victim = next(r for r in before["records"] if r["method"] == "ftpd")
    run_dir = copy / "runs" / victim["run_dir"].split("/runs/")[-1]
    (run_dir / "record.json").unlink()  # as if the benchmark was killed while this run was training
    (run_dir / "last.pt").unlink()
    killed = {**before, "records": [r for r in before["records"] if r["key"] != victim["key"]]}
    (copy / "results.json").write_text(json.dumps(killed))  # results.json is saved after each finished run only
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(copy)])
    assert res.exit_code == 0, res.output
    assert res.output.count("ftpdet distill (ftpd)") == 1  # the one lost run trained again, nothing else
    assert "ftpdet train:" not in res.output and res.output.count("(reused;") > 15
    after = {r["key"]: r for r in json.loads((copy / "results.json").read_text())["records"]}
    for key in ("AP", "AP50", "AP75"):
        assert after[victim["key"]][key] == victim[key]  # a run is a function of its key: same seed, same result


def test_a_teacher_cut_off_while_training_is_finished_not_taken_from_a_committed_record(smoke, tmp_path):
    """A teacher's checkpoint is what its students start from: a last.pt without the run directory's own record is
    a run cut off mid-training, and a finished record of the same key in committed results does not vouch for it."""
    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    committed = tmp_path / "accuracy.json"
    shutil.copyfile(out / "results.json", committed)
    before = json.loads(committed.read_text())
    teacher_dir = copy / "teachers" / before["teachers"]["main"]["run_dir"].split("/teachers/")[-1]
    (teacher_dir / "record.json").unlink()  # cut off while training: its last.pt is not the finished teacher's
    victim = next(r for r in before["records"] if r["method"] == "kd")  # a student run that needs the teacher
    run_dir = copy / "runs" / victim["run_dir"].split("/runs/")[-1]
    shutil.rmtree(run_dir)
    (copy / "results.json").unlink()
    uncommitted = {**before, "records": [r for r in before["records"] if r["key"] != victim["key"]]}
    committed.write_text(json.dumps(uncommitted))
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(copy), "--only", "main",
                              "--reuse", str(committed)])
    assert res.exit_code == 0, res.output
    assert res.output.count("== teacher (main)") == 1  # resumed from its checkpoint and finished, then used
    assert (teacher_dir / "record.json").exists()
    assert res.output.count("ftpdet distill (kd)") == 1
    after = {r["key"]: r for r in json.loads((copy / "results.json").read_text())["records"]}
    assert after[victim["key"]]["AP"] == victim["AP"]  # the finished teacher's checkpoint: the same student


def test_parts_run_in_separate_sittings_and_committed_records_are_reused(smoke, tmp_path):
    """--only runs some tables and keeps the others of --out; --reuse takes finished runs of the same key from a
    results JSON (as committed under docs/) so a new machine retrains nothing it already has."""
    out, _ = smoke
    assert {s.table for s in plan_runs(PRESETS["quick"], 1, 2, only=("tau",))} == {"tau"}
    assert {s.table for s in plan_runs(PRESETS["quick"], 1, 2, only=("ablation", "hetero"))} == {
        "ablation", "position", "dlt", "ctf", "hetero"}
    before = json.loads((out / "results.json").read_text())
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(copy), "--only", "tau"])
    assert res.exit_code == 0, res.output
    assert "ftpdet train:" not in res.output and "ftpdet distill" not in res.output
    after = json.loads((copy / "results.json").read_text())
    assert after["tables"] == before["tables"]  # the main, ablation and hetero tables of the first sitting are kept
    assert {r["key"] for r in after["records"]} == {r["key"] for r in before["records"]}
    # a new machine: an empty --out, the committed results JSON, only the main comparison
    committed = tmp_path / "accuracy.json"
    shutil.copyfile(out / "results.json", committed)
    fresh = tmp_path / "fresh"
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(fresh), "--only", "main",
                              "--reuse", str(committed)])
    assert res.exit_code == 0, res.output
    assert "ftpdet train:" not in res.output and "ftpdet distill" not in res.output  # not even the teacher
    main = Results(json.loads((fresh / "results.json").read_text()))
    for row in Results(before).rows("main"):
        assert main.values(main.row("main", row["label"])) == Results(before).values(row), row["label"]
    assert json.loads((fresh / "results.json").read_text())["teachers"]["main"]["AP"] == before["teachers"]["main"]["AP"]
    bad = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(fresh), "--only", "everything"])
    assert bad.exit_code == 2 and "--only everything: choose from main, hetero, ablation, tau, plateau, unlabeled" in bad.output


def test_a_benchmark_keeps_its_precision_decisions(smoke, tmp_path, monkeypatch):
    """Each run's key holds the precision its models resolved to on this machine. The results JSON keeps those
    decisions and a later sitting takes them back without timing anything, so a lost precision cache, whose timing
    could choose otherwise on a close call, cannot re-key the runs."""
    from ftpdet.engine import run_precision

    def no_timing(*args, **kwargs):
        raise AssertionError("the benchmark resolved a precision again instead of taking back its own decision")

    out, _ = smoke
    before = json.loads((out / "results.json").read_text())
    assert before["precisions"] and all(set(p) == {"amp", "channels_last", "teacher_amp", "teacher_channels_last"}
                                        for p in before["precisions"].values())
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setenv("FTPDET_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(run_precision, "resolve_precisions", no_timing)
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(copy), "--only", "main"])
    assert res.exit_code == 0, res.output
    assert "ftpdet train:" not in res.output and "ftpdet distill" not in res.output
    assert json.loads((copy / "results.json").read_text())["precisions"] == before["precisions"]


def test_runs_of_another_machine_are_neither_reused_nor_continued(smoke, tmp_path):
    """Another CPU trains other weights from the same key, so its records are not reused and its results (--out's
    or the report's) are not continued: one line, exit 2, the file untouched. On the same machine a new --out starts
    from the report's own results, so a sitting of some parts keeps the report's other tables."""
    from ftpdet.provenance import machine_description

    out, _ = smoke
    before = json.loads((out / "results.json").read_text())
    assert {r["machine"] for r in before["records"]} == {machine_description()}
    same = tmp_path / "same.json"
    shutil.copyfile(out / "results.json", same)
    bench = AccuracyBench(PRESETS["smoke"], tmp_path / "fresh", progress=False, reuse=(same,), mirror=same)
    assert set(bench.known) == {r["key"] for r in before["records"]} and bench.known_teachers
    assert bench.previous["tables"] == before["tables"]  # the report's own results are the earlier sitting
    # records of another machine, with the machine per record or (older records) only in the file
    other = tmp_path / "benchmarks" / "accuracy.json"
    other.parent.mkdir()
    def old_style(records):
        return [{k: v for k, v in r.items() if k != "machine"} for r in records]

    other.write_text(json.dumps(before | {"machine": "Another CPU, 2 threads", "records": old_style(before["records"]),
                                          "teachers": dict(zip(before["teachers"], old_style(before["teachers"].values()))),
                                          "pretrain": {}}))
    bench = AccuracyBench(PRESETS["smoke"], tmp_path / "fresh", progress=False, reuse=(other,))
    assert bench.known == {} and bench.known_teachers == {}
    text = other.read_text()
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(tmp_path / "fresh"),
                              "--report", str(tmp_path / "benchmarks.md")])
    assert res.exit_code == 2, res.output
    assert f"{other}: measured on Another CPU, 2 threads, and this machine is {machine_description()}" in res.output
    assert other.read_text() == text and not (tmp_path / "fresh" / "results.json").exists()


def test_a_new_validation_set_measures_finished_runs_again_without_training(smoke, tmp_path, monkeypatch):
    """Evaluation cannot move the weights, so a run whose final checkpoint is here is evaluated again when only the
    validation set (or an evaluation setting) changed: on the same images it gives the AP training measured, on
    other images another AP, and nothing trains."""
    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {r["key"]: r for r in json.loads((copy / "results.json").read_text())["records"]}
    for record_path in (copy / "runs").glob("*/record.json"):  # as if measured on another set
        record = json.loads(record_path.read_text())
        record_path.write_text(json.dumps(record | {"eval_key": "another set", "AP": -1.0}))
    (copy / "results.json").unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr("ftpdet.engine.train.train", no_training)
    after = AccuracyBench(PRESETS["smoke"], copy, progress=False, only=("main",))()
    main = after["records"]
    assert main
    for r in main:  # the curve stays as measured while training
        assert (r["AP"], r["AP50"]) == (before[r["key"]]["AP"], before[r["key"]]["AP50"]), r["run_dir"]
        assert r["eval_key"] == r["history_eval_key"] == before[r["key"]]["eval_key"]
    # another validation set: fewer images, so another AP for the student, still without training
    val = json.loads((copy / "data" / "annotations" / "instances_val.json").read_text())
    keep = {im["id"] for im in val["images"][: len(val["images"]) // 2]}
    val |= {"images": [im for im in val["images"] if im["id"] in keep],
            "annotations": [a for a in val["annotations"] if a["image_id"] in keep]}
    (copy / "data" / "annotations" / "instances_val.json").write_text(json.dumps(val))
    halved = AccuracyBench(PRESETS["smoke"], copy, progress=False, only=("main",))()
    assert {r["key"] for r in halved["records"]} == {r["key"] for r in main}  # the same weights
    assert all(r["eval_key"] != before[r["key"]]["eval_key"] for r in halved["records"])
    assert {r["val_images"] for r in main} == {2 * len(keep)} and {r["val_images"] for r in halved["records"]} == {len(keep)}


def test_the_weights_key_leaves_evaluation_out_and_the_eval_key_takes_it(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path)
    stricter = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"score_thr": 0.3})})
    assert run_key(cfg, "kd", "t", "d") == run_key(stricter, "kd", "t", "d")
    assert eval_key(cfg, "v") != eval_key(stricter, "v")
    assert eval_key(cfg, "v") != eval_key(cfg, "other images")
    larger = cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": 160})})
    assert run_key(cfg, "kd", "t", "d") != run_key(larger, "kd", "t", "d") and eval_key(cfg, "v") != eval_key(larger, "v")


def cut_off_after(bench: AccuracyBench, runs: int) -> list:
    """Run the sitting, interrupted (as by Ctrl-C) when it starts run number runs + 1; returns the specs it ran."""
    original, calls = bench.run, []

    def run_then_die(spec):
        if len(calls) == runs:
            raise KeyboardInterrupt
        calls.append(spec)
        return original(spec)

    bench.run = run_then_die
    with pytest.raises(KeyboardInterrupt):
        bench()
    return calls


def test_a_sitting_cut_off_leaves_its_finished_records_in_the_mirror(smoke, tmp_path):
    """--report's JSON is rewritten after every run: a sitting that dies after two runs has committed-to-be both."""
    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "results.json").unlink()  # this sitting starts without the earlier results
    mirror = tmp_path / "docs" / "bench" / "accuracy.json"
    bench = AccuracyBench(PRESETS["smoke"], copy, progress=False, only=("tau",), mirror=mirror,
                          reuse=(out / "results.json",))
    calls = cut_off_after(bench, 2)
    saved = json.loads(mirror.read_text())
    assert saved == json.loads((copy / "results.json").read_text())
    assert [row["label"] for row in saved["tables"]["tau"]] == [calls[0].label, calls[1].label]


def test_a_sitting_that_reruns_a_table_and_is_cut_off_keeps_the_earlier_seeds(smoke, tmp_path):
    """A sitting that runs a table again (a retrained run, a new validation set) replaces each seed's entry as it
    lands, so when it dies after its first run the results still hold every earlier seed of every row; a sitting
    that finishes holds exactly its own plan."""
    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    two = PRESETS["smoke"].with_seeds(2)
    AccuracyBench(two, copy, progress=False, only=("main",))()
    before = json.loads((copy / "results.json").read_text())
    assert all(len(row["keys"]) == 2 for row in before["tables"]["main"])
    lost = Results(before).row("main", "student")["keys"][0]  # seed 0 of the first row trains again
    for name in ("record.json", "last.pt"):
        next((copy / "runs").glob(f"student-s0-{lost}")).joinpath(name).unlink()
    bench = AccuracyBench(two, copy, progress=False, only=("main",))
    cut_off_after(bench, 1)
    cut = json.loads((copy / "results.json").read_text())
    assert cut["tables"] == before["tables"]  # the retrained run has the same key; every row keeps both seeds
    assert {r["key"] for r in cut["records"]} == {r["key"] for r in before["records"]}
    one = AccuracyBench(PRESETS["smoke"], copy, progress=False, only=("main",))()  # a finished 1-seed sitting
    assert all(len(row["keys"]) == 1 for row in one["tables"]["main"])
    listed = {k for row in one["tables"]["main"] for k in row["keys"]}
    assert {r["seed"] for r in one["records"] if r["key"] in listed} == {0}
    assert one["tables"]["plateau"] == before["tables"]["plateau"]  # a table the sitting does not run is kept


def test_variant_is_paired_with_the_benchmarks_own_runs(smoke, tmp_path):
    out, _ = smoke
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    results = json.loads((copy / "results.json").read_text())
    by_key = {r["key"]: r for r in results["records"]}
    default = by_key[Results(results).row("main", "ftpd")["keys"][0]]
    res = runner.invoke(app, ["bench", "variant", "ftpd", "--set", "distill.ftpd.cls_weight=2", "--preset", "smoke",
                              "--out", str(copy), "--against", "bckd"])
    assert res.exit_code == 0, res.output
    assert res.output.count("ftpdet distill (ftpd)") == 1  # the variant trains; the defaults are the benchmark's run
    assert "ftpdet distill (bckd)" not in res.output  # --against pairs with the benchmark's own BCKD run too
    line = next(x for x in res.output.splitlines() if x.strip().startswith("seed 0:"))
    _, _, variant_ap, _, default_ap, diff = line.split()  # seed 0: 1.23 vs 1.00 (+0.23)
    assert float(default_ap) == pytest.approx(default["AP"], abs=0.006)
    assert float(diff.strip("()")) == pytest.approx(float(variant_ap) - default["AP"], abs=0.011)
    assert "paired difference:" in res.output and "(95% interval)" in res.output
    # the gain over the plain student pairs the variant with the benchmark's own student run at that seed
    student = by_key[Results(results).row("main", "student")["keys"][0]]
    gain_line = next(x for x in res.output.splitlines() if "minus the plain student" in x)
    assert f"({student['AP']:.2f}): " in gain_line  # one seed: the mean alone, then the verdict
    gain = float(gain_line.split("): ")[1].split(":")[0])
    assert gain == pytest.approx(float(variant_ap) - student["AP"], abs=0.011)
    bckd = by_key[Results(results).row("main", "bckd")["keys"][0]]
    bckd_line = next(x for x in res.output.splitlines() if "minus bckd at its defaults" in x)
    assert f"({bckd['AP']:.2f}): " in bckd_line
    assert float(bckd_line.split("): ")[1].split(":")[0]) == pytest.approx(float(variant_ap) - bckd["AP"], abs=0.011)
    # --on sets both sides: CTF's effect without DLT is two ablation rows of the benchmark, nothing to train
    res = runner.invoke(app, ["bench", "variant", "ftpd", "--on", "distill.ftpd.dlt.enabled=false", "--set",
                              "distill.ftpd.ctf.enabled=false", "--preset", "smoke", "--out", str(copy)])
    assert res.exit_code == 0, res.output
    assert "ftpdet distill" not in res.output
    ab = Results(results)
    pd_only, pd_ctf = ab.values(ab.row("ablation", "PD"))[0], ab.values(ab.row("ablation", "PD + CTF"))[0]
    assert f"seed 0: {pd_only:.2f} vs {pd_ctf:.2f}" in res.output
    # --teacher hetero: the same comparison on the heterogeneous pair, against that pair's own FTPD run
    res = runner.invoke(app, ["bench", "variant", "ftpd", "--teacher", "hetero", "--set", "distill.ftpd.pd.position=0",
                              "--preset", "smoke", "--out", str(copy)])
    assert res.exit_code == 0, res.output
    assert res.output.count("ftpdet distill (ftpd)") == 1 and "hetero teacher" in res.output
    het_ap = ab.values(ab.row("hetero", "ftpd"))[0]
    assert f"vs {het_ap:.2f} (" in next(x for x in res.output.splitlines() if x.strip().startswith("seed 0:"))
    bad = runner.invoke(app, ["bench", "variant", "ftpd", "--preset", "smoke", "--out", str(copy)])
    assert bad.exit_code == 2 and "at least one --set" in bad.output
    bad = runner.invoke(app, ["bench", "variant", "ftpd", "--set", "distill.ftpd.cls_weight=2", "--against", "bkcd",
                              "--preset", "smoke", "--out", str(copy)])
    assert bad.exit_code == 2 and "bkcd" in bad.output


def test_report_is_regenerated_from_the_json_alone(smoke, tmp_path):
    out, _ = smoke
    report = tmp_path / "docs" / "benchmarks.md"
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(out), "--report", str(report)])
    assert res.exit_code == 0, res.output
    first = report.read_text()
    assert (tmp_path / "docs" / "benchmarks" / "accuracy.json").is_file()
    res = runner.invoke(app, ["bench", "report", str(report)])
    assert res.exit_code == 0, res.output
    assert report.read_text() == first


def test_a_report_of_the_main_comparison_alone_names_the_parts_it_did_not_run(smoke, tmp_path):
    out, _ = smoke
    data = json.loads((out / "results.json").read_text())
    data["tables"] = {"main": data["tables"]["main"]}  # as `--only main` on a new dataset leaves it
    report = tmp_path / "bench.md"
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "accuracy.json").write_text(json.dumps(data))
    res = runner.invoke(app, ["bench", "report", str(report)])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert "### Main comparison" in text and "### FTPD against each baseline" in text
    for heading in ("### FTPD ablation", "### Where PD distils", "### How DLT", "### How CTF", "### LD's temperature",
                    "### Heterogeneous pair"):
        assert heading not in text, heading
    assert ("Not measured in this benchmark: FTPD's ablation, PD positions, DLT modes, CTF modes, LD's tau sweep, "
            "the heterogeneous pair, the unlabeled images") in text
    assert not (tmp_path / "bench" / "tau.png").exists()
    assert "heterogeneous pair over" not in text and "tau sweep over" not in text  # the header names the parts run
    full = runner.invoke(app, ["bench", "report", str(out / "benchmarks.md")])
    assert full.exit_code == 0 and "heterogeneous pair over 1; tau sweep over 1." in (out / "benchmarks.md").read_text()


def test_last_epoch_terms_average_the_final_epochs_logged_steps(tmp_path):
    lines = [{"step": 10, "epoch": 1, "loss": 9.0, "loss_qfl": 9.0},
             {"step": 20, "epoch": 2, "loss": 3.0, "loss_qfl": 1.0, "distill_x": 2.0, "distill_x_raw": 4.0},
             {"step": 20, "epoch": 2, "eval": {"AP": 0.1}},
             {"step": 30, "epoch": 2, "loss": 5.0, "loss_qfl": 2.0, "distill_x": 3.0, "distill_x_raw": 6.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert last_epoch_terms(path) == {"distill_x": 2.5, "distill_x_raw": 5.0, "loss": 4.0, "loss_qfl": 1.5}
    assert last_epoch_terms(tmp_path / "missing.jsonl") == {}


def test_paired_differences_and_gap_closure():
    method = {0: 10.0, 1: 12.0, 2: 11.0}
    base = {0: 8.0, 1: 9.0, 2: 9.0}
    assert paired(method, base) == [2.0, 3.0, 2.0]
    # mean gain 7/3 over a gap of 20 - 26/3 = 34/3
    assert closure(method, base, 20.0) == pytest.approx((7 / 3) / (34 / 3))
    assert closure(method, {}, 20.0) is None and closure(method, base, None) is None
    assert paired({0: 1.0, 3: 2.0}, {0: 0.5}) == [0.5]  # only seeds both have


def test_run_key_covers_the_runs_methods_only(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path)
    other_ftpd = cfg.model_copy(deep=True)
    other_ftpd.distill.ftpd.pd.position = 1
    assert run_key(cfg, "kd", "t", "d") == run_key(other_ftpd, "kd", "t", "d")  # FTPD's defaults do not retrain KD
    assert run_key(cfg, "ftpd", "t", "d") != run_key(other_ftpd, "ftpd", "t", "d")
    assert run_key(cfg, "ftpd+pkd", "t", "d") != run_key(other_ftpd, "ftpd+pkd", "t", "d")
    assert run_key(cfg, None, None, "d") == run_key(other_ftpd, None, None, "d")  # the plain student has no method
    assert run_key(cfg, "kd", "t", "d") != run_key(cfg, "kd", "other teacher", "d")
    onnx = cfg.model_copy(deep=True)
    onnx.distill.teacher_runtime = "onnxruntime"  # the teacher's forward in float32 by ONNX Runtime: other numbers
    assert run_key(cfg, "kd", "t", "d") != run_key(onnx, "kd", "t", "d")
    assert run_key(cfg, None, None, "d") == run_key(onnx, None, None, "d")  # no teacher, nothing changes


def test_the_cache_key_covers_the_code_a_run_executes_and_nothing_else(tiny_data, tmp_path):
    """A change that can move a number (engine, models, data, the run's methods) is in the key; one that cannot
    (report, CLI, another method's file) is not."""
    kd, ftpd, plain = training_modules(["kd"]), training_modules(["ftpd"]), training_modules([])
    for module in ("ftpdet.engine.train", "ftpdet.engine.step", "ftpdet.models.detector", "ftpdet.models.criterion",
                   "ftpdet.models.backbones", "ftpdet.data.coco", "ftpdet.data.transforms", "ftpdet.losses",
                   "ftpdet.distributed", "ftpdet.config", "ftpdet.methods.base", "ftpdet.methods.kd",
                   "ftpdet.models.precision", "ftpdet.engine.onnx_teacher"):
        assert module in kd, module
    assert {"ftpdet.methods.ftpd", "ftpdet.methods.ctf", "ftpdet.methods.temperature"} <= set(ftpd) - set(kd)
    assert not any(m.startswith(("ftpdet.bench", "ftpdet.cli", "ftpdet.demo", "ftpdet.methods.kd")) for m in plain)
    assert not any(m.startswith(("ftpdet.bench", "ftpdet.cli", "ftpdet.plots")) for m in ftpd)
    cfg = tiny_config(tiny_data, tmp_path)
    key = run_key(cfg, "kd", "t", "d")
    edited = {**kd, "ftpdet.models.detector": tiny_data / "annotations" / "instances_val.json"}  # another source
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ftpdet.bench.accuracy.training_modules", lambda methods, entry="ftpdet.engine.train": edited)
        assert run_key(cfg, "kd", "t", "d") != key
    assert run_key(cfg, "kd", "t", "d") == key


def test_choice_table_gives_each_variant_its_paired_difference_from_the_defaults():
    def rec(key, seed, ap):
        return {"key": key, "seed": seed, "AP": ap, "AP50": 2 * ap, "AP75": ap, "status": "done"}

    data = {
        "records": [rec("d0", 0, 5.0), rec("d1", 1, 6.0), rec("s0", 0, 5.5), rec("s1", 1, 5.0)],
        "tables": {
            "main": [{"label": "ftpd", "method": "ftpd", "keys": ["d0", "d1"]}],
            "dlt": [{"label": "quality (default)", "method": "ftpd", "keys": ["d0", "d1"]},
                    {"label": "std", "method": "ftpd", "keys": ["s0", "s1"]}],
        },
        "teachers": {},
    }
    lines = choice_table(Results(data), "dlt", "DLT")
    assert lines[2].startswith("| quality (default) | 2 | 5.50 ± 0.71") and "(the defaults)" in lines[2]
    # -0.25 +- t(0.975, 1) * 1.06 / sqrt(2): two seeds that disagree give a wide interval holding 0
    assert lines[3] == "| std | 2 | 5.25 ± 0.35 | 10.50 ± 0.71 | 5.25 ± 0.35 | +0.50, -1.00 | -0.25 [-9.78, +9.28] | no |"
    assert earlier_note(Results(data), "dlt", "ablation") == []
    # New defaults re-key the main table's FTPD: the table, not rerun yet, pairs with its own first row and says so.
    data["records"] += [rec("n0", 0, 7.0), rec("n1", 1, 7.0)]
    data["tables"]["main"][0]["keys"] = ["n0", "n1"]
    lines = choice_table(Results(data), "dlt", "DLT")
    assert "(the earlier defaults)" in lines[2]
    assert lines[3].endswith("| +0.50, -1.00 | -0.25 [-9.78, +9.28] | no |")  # against its own defaults, not n0/n1
    note = earlier_note(Results(data), "dlt", "ablation")
    assert "earlier defaults" in note[1] and "--only ablation" in note[1]


def test_hetero_answer_needs_a_paired_lead_over_every_baseline_of_the_pair():
    def data(ftpd, kd, ld, bckd=None):
        recs, rows = [], []
        for name, aps in (("kd", kd), ("ld", ld), ("bckd", bckd), ("ftpd", ftpd)):
            if aps is None:
                continue
            keys = [f"{name}{i}" for i in range(len(aps))]
            recs += [{"key": k, "seed": i, "AP": ap, "status": "done"} for i, (k, ap) in enumerate(zip(keys, aps))]
            rows.append({"label": name, "method": name, "keys": keys})
        return Results({"records": recs, "tables": {"hetero": rows}, "teachers": {}})

    def hetero_line(res):
        return next(x for x in answers(res, None) if x.startswith("| With a teacher of another architecture"))

    # higher mean over KD (+0.5) but the per-seed differences (+2.5, -1.0, 0.0) swing more than that
    line = hetero_line(data([6.5, 4.0, 5.0], [4.0, 5.0, 5.0], [3.0, 3.0, 3.0]))
    assert "FTPD - KD +0.50 [-3.98, +4.98]" in line and line.endswith("**not resolved** |")
    # ahead on every seed (+1.0, +0.5, +0.3), but 3 seeds give an interval of +-0.90 around +0.60: not resolved
    line = hetero_line(data([6.0, 5.5, 5.2], [5.0, 5.0, 4.9], [3.0, 3.0, 3.0]))
    assert "FTPD - KD +0.60 [-0.30, +1.50]" in line and line.endswith("**not resolved** |")
    assert hetero_line(data([6.0], [5.0], [3.0])).endswith("**not resolved** |")  # one seed: no interval
    line = hetero_line(data([6.0, 6.1, 6.2], [5.0, 5.0, 5.0], [3.0, 3.0, 3.0]))  # +1.10 +- 0.25: above 0
    assert "FTPD - KD +1.10 [+0.85, +1.35]" in line and line.endswith("**yes** |")
    # behind KD on every seed: a plain no
    assert hetero_line(data([4.0, 4.1, 3.9], [5.0, 5.2, 5.1], [3.0, 3.0, 3.0])).endswith("**no** |")
    # with BCKD in the pair, a lead over KD and LD is not enough: behind BCKD on every seed is a no
    line = hetero_line(data([6.0, 6.1, 6.2], [5.0, 5.0, 5.0], [3.0, 3.0, 3.0], [6.5, 6.6, 6.8]))
    assert line.startswith("| With a teacher of another architecture, does FTPD beat KD, LD, BCKD? |")
    assert "FTPD - BCKD -0.53 [" in line and line.endswith("**no** |")


def test_a_pair_whose_ftpd_logged_other_terms_than_the_main_table_says_so():
    """The heterogeneous pair's FTPD shares no key with the main table's (another teacher); when its runs logged other
    loss terms (or none), they are not the main table's FTPD and the table and the answer say so."""
    current = {"loss": 1.0, "distill_ftpd_cls": 0.5, "distill_ftpd_ta_qfl": 0.3}

    def res(hetero_terms):
        recs = [{"key": f"m{i}", "seed": i, "AP": 6.0, "status": "done", "terms": current} for i in range(2)]
        recs += [{"key": f"{n}{i}", "seed": i, "AP": ap, "status": "done", **({"terms": t} if t else {})}
                 for n, ap, t in (("h", 6.0, hetero_terms), ("k", 5.0, None), ("l", 3.0, None)) for i in range(2)]
        rows = [{"label": n, "method": n, "keys": [f"{k}0", f"{k}1"]} for n, k in (("kd", "k"), ("ld", "l"), ("ftpd", "h"))]
        return Results({"records": recs, "teachers": {},
                        "tables": {"main": [{"label": "ftpd", "method": "ftpd", "keys": ["m0", "m1"]}], "hetero": rows}})

    def hetero_line(r):
        return next(x for x in answers(r, None) if x.startswith("| With a teacher of another architecture"))

    for stale in (None, {"loss": 1.0, "distill_ftpd_cls": 0.5}):  # before the term log; without a part's term
        assert unmatched_ftpd(res(stale), "hetero")
        assert "not shown to be at its current defaults" in hetero_line(res(stale))
        note = unmatched_note(res(stale), "hetero", "hetero")
        assert "not shown to run the main table's FTPD" in note[1] and "--only hetero" in note[1]
    assert not unmatched_ftpd(res(current), "hetero") and unmatched_note(res(current), "hetero", "hetero") == []
    assert "not shown" not in hetero_line(res(current))
    old_main = res(None)  # a main table without the term log either: nothing to compare, nothing said
    for r in old_main.data["records"]:
        r.pop("terms", None)
    assert not unmatched_ftpd(Results(old_main.data), "hetero")


def test_the_interval_is_the_t_interval_of_the_paired_differences():
    m, low, high = ci95([1.0, 2.0, 3.0])  # mean 2, std 1, t(0.975, 2) = 4.303
    assert (m, low, high) == pytest.approx((2.0, 2 - 4.303 / 3**0.5, 2 + 4.303 / 3**0.5), abs=1e-3)
    assert not resolved([1.0, 2.0, 3.0]) and resolved([1.0, 1.2, 1.1]) and resolved([-1.0, -1.2, -1.1])
    assert not resolved([5.0])  # one seed has no interval
    m, low, high = ci95([0.4, 0.5, 0.6, 0.5, 0.45])
    assert low > 0 and high < 1 and m == pytest.approx(0.49)
    # paired ratios: the interval of the log ratios, exponentiated (a ratio and its inverse mirror each other)
    g, low, high = ratio_ci95([2.0, 4.0, 8.0])  # logs: ln 4 -+ ln 2
    assert (g, low, high) == pytest.approx((4.0, 4 * 2 ** -(4.303 / 3**0.5), 4 * 2 ** (4.303 / 3**0.5)), rel=1e-3)
    assert ratio_ci95([0.5, 0.25, 0.125]) == pytest.approx((1 / g, 1 / high, 1 / low))


def test_the_training_loop_runs_the_shared_step(tiny_data, tmp_path, monkeypatch):
    batches = []
    original = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, images, targets: batches.append(len(images))
                        or original(self, images, targets))
    train(tiny_config(tiny_data, tmp_path / "run", "train.epochs=1"), progress=False)
    assert batches == [8, 8]  # 16 images, batch 8: every optimisation step went through TrainStep


def test_seeds_are_paired_distillation_sees_the_plain_runs_augmentations(tiny_data, teacher_ckpt, tmp_path, monkeypatch):
    """Building the teacher and a method's adapters must not shift the augmentation stream of the same seed."""
    seen: list[list[float]] = []
    original = CocoDetection.__getitem__

    def recording(self, index):
        image, target = original(self, index)
        if self.augment is not None and len(self) == 16:  # the training set
            seen[-1].append(float(image.float().mean()) + float(target["boxes"].sum()))
        return image, target

    monkeypatch.setattr(CocoDetection, "__getitem__", recording)
    for method in (None, "ftpd+pkd"):  # ftpd+pkd builds 1x1 adapters (student 32 ch, teacher 48 ch)
        seen.append([])
        cfg = tiny_config(tiny_data, tmp_path / str(method), "train.epochs=1")
        train(cfg, teacher=teacher_ckpt if method else None, method=method, progress=False)
    assert len(seen[0]) == 16 and seen[0] == seen[1]


def test_bad_preset_and_bad_data_are_one_line(tmp_path):
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "huge", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--preset must be one of smoke, quick, lab, full" in res.output
    res = runner.invoke(app, ["bench", "accuracy", "--preset", "smoke", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "annotations/instances_train.json: not found; --data expects" in res.output


def test_user_data_runs_the_same_comparison(tiny_data, tmp_path):
    # The main part only: the other parts read the data through the same path (the smoke fixture runs them all).
    bench = AccuracyBench(PRESETS["smoke"], tmp_path / "b", data=tiny_data, progress=False, only=("main",))
    results = bench()
    assert results["data"]["builtin"] is False and results["data"]["root"] == str(tiny_data)
    assert {r["method"] for r in results["records"]} == {"student", *MAIN_METHODS}
    assert all(r["status"] == "done" for r in results["records"])


def test_speed_benchmark_measures_every_method_against_the_floor(smoke, tmp_path, monkeypatch):
    from ftpdet.bench.accuracy import trained_pair
    from ftpdet.bench.speed import run_speed

    steps = []  # the speed benchmark times the training loop's own step (engine/step.py), not a copy of it
    original = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, *a: steps.append(self) or original(self, *a))
    teacher, student = trained_pair(smoke[0])  # the smoke benchmark's trained teacher and seed-0 student
    assert teacher.is_file() and student.is_file()
    path = run_speed(PRESETS["smoke"], tmp_path, iters=1, rounds=1, teacher=teacher, student=student,
                     unlabeled_methods=("pseudo", "ftpd"))
    speed = json.loads(path.read_text())
    # warm-up + 1 timed call per step kind; the two teacher forwards (labeled, + unlabeled) are no steps
    assert len(steps) == 2 * (len(speed["ms"]) - 2)
    assert speed["trained_weights"] is True
    floor = speed["ms"]["student step"] + speed["ms"]["teacher forward"]
    for name in MAIN_METHODS:
        assert speed["ratios"][name] == pytest.approx(speed["ms"][name] / floor, rel=1e-2)
    # steps with as many unlabeled images as labeled ones, against their own floor (student step + teacher forward
    # on the whole batch)
    mixed = speed["ms"]["student step (+ unlabeled)"] + speed["ms"]["teacher forward (+ unlabeled)"]
    for name in ("pseudo", "ftpd"):
        assert speed["ratios"][f"{name} (+ unlabeled)"] == pytest.approx(speed["ms"][f"{name} (+ unlabeled)"] / mixed,
                                                                         rel=1e-2)
    assert speed["unlabeled_per_step"] == speed["batch_size"]
    for name, ratio in speed["ratios"].items():  # one round: paired by round is the ratio itself, with no interval
        assert speed["round_ratios"][name] == [pytest.approx(ratio, abs=2e-3), None, None]
    # the default position is the `ftpd` row; every other position the pair allows is timed as a variant
    assert {"ftpd, PD at tower layer 0", "ftpd, PD at tower layer 1"} <= set(speed["ratios"])
    assert "ftpd, PD at the student's outputs" not in speed["ratios"]
    assert len([k for k in speed["ratios"] if k.startswith("ftpd, PD at the outputs and tower layer ")]) == 1
    assert "ftpd, without the teacher's labels" in speed["ratios"]  # what the default pd.assign costs
    runtimes = {(r["model"].split()[0], r["runtime"].split()[0]) for r in speed["inference"]}
    assert runtimes == {("teacher", "PyTorch"), ("teacher", "ONNX"), ("student", "PyTorch"), ("student", "ONNX")}
    assert all(r["images_per_s"] > 0 for r in speed["inference"])


def test_speed_ratios_are_paired_by_round_with_an_interval():
    """Load that doubles a whole round cancels in a ratio paired by round (the medians' ratio does not), each kind
    reads its own floor (mixed batches: the mixed floor), and the interval is the t-interval of the log ratios."""
    import math

    from scipy import stats

    samples = {"student step": [100.0, 200.0, 100.0], "teacher forward": [50.0, 100.0, 50.0],
               "ftpd": [165.0, 330.0, 165.0],  # 1.10 x in every round
               "student step (+ unlabeled)": [200.0, 400.0, 200.0], "teacher forward (+ unlabeled)": [100.0, 200.0, 100.0],
               "ftpd (+ unlabeled)": [300.0, 720.0, 330.0]}  # 1.00, 1.20, 1.10 x its own floor
    r = round_ratios(samples)
    assert set(r) == {"ftpd", "ftpd (+ unlabeled)"}  # the floors' parts are no rows
    assert r["ftpd"] == pytest.approx((1.1, 1.1, 1.1))
    logs = [math.log(x) for x in (1.0, 1.2, 1.1)]
    m = sum(logs) / 3
    half = stats.t.ppf(0.975, 2) * stats.tstd(logs) / math.sqrt(3)
    assert r["ftpd (+ unlabeled)"] == pytest.approx((math.exp(m), math.exp(m - half), math.exp(m + half)))
    assert r["ftpd (+ unlabeled)"][2] > 1.2  # three rounds this spread cannot show the cost within 1.20 x
    speed = {"ms": {k: sorted(v)[1] for k, v in samples.items()}, "samples_ms": samples,
             "ratios": {"ftpd": 165 / 150, "ftpd (+ unlabeled)": 330 / 300}}
    table = "\n".join(speed_table(speed))
    assert "| ftpd | 165.0 | 1.10 | 1.10 [1.10, 1.10] |" in table
    lo, hi = r["ftpd (+ unlabeled)"][1:]
    assert f"| ftpd (+ unlabeled) | 330.0 | 1.10 | 1.10 [{lo:.2f}, {hi:.2f}] |" in table
    assert "| student step | 100.0 |  |  |" in table
    del speed["samples_ms"]  # an older speed.json: medians only, the paired column left empty
    assert "| ftpd | 165.0 | 1.10 |  |" in "\n".join(speed_table(speed))


def test_profile_breaks_the_loop_step_into_its_phases(tmp_path):
    from ftpdet.bench.profile import PHASES, profile_steps, profile_table

    path = profile_steps(PRESETS["smoke"], tmp_path, "ftpd", iters=1, rounds=1)
    result = json.loads(path.read_text())
    plain, distil = (result["steps"][k]["phases_ms"] for k in ("student step", "ftpd step"))
    assert set(plain) == set(PHASES)
    for phase in ("data", "student forward", "assignment + GFL losses", "backward", "optimizer"):
        assert plain[phase] > 0 and distil[phase] > 0, phase
    # only the distillation step has a teacher and distillation terms; no weight average without train.ema
    assert plain["teacher forward"] == plain["distillation terms"] == 0
    assert distil["teacher forward"] > 0 and distil["distillation terms"] > 0
    assert plain["weight average"] == distil["weight average"] == 0
    table = profile_table(result)
    assert table[0] == "| phase (ms per step) | student step | ftpd step |" and len(table) == 2 + 7 + 2


def test_pretrained_backbones_train_once_per_role_and_start_every_run(tmp_path, monkeypatch):
    # A preset with pretraining: one pretraining run per role on the separate set (seed 1), whose backbone every run
    # of that role starts from; the key follows the pretraining run (not its path); a rerun trains nothing.
    from dataclasses import replace

    from ftpdet.engine import train as train_module

    preset = replace(PRESETS["smoke"], pretrain_epochs=1, pretrain_num_train=16, pretrain_num_val=4)
    started = []
    original = train_module.train
    monkeypatch.setattr("ftpdet.engine.train.train", lambda cfg, **kw: started.append(cfg) or original(cfg, **kw))
    bench = AccuracyBench(preset, tmp_path / "b", progress=False, only=("main",))
    results = bench()
    pretrain_dirs = sorted(p.name.split("-")[0] for p in (tmp_path / "b" / "pretrain").iterdir())
    assert pretrain_dirs == ["main", "student"]  # the main part needs no heterogeneous teacher
    assert json.loads((tmp_path / "b" / "pretrain_data" / "synth.json").read_text())["seed"] == 1
    runs = [c for c in started if "/pretrain/" not in c.train.out_dir]
    pre = {c.train.out_dir.split("/pretrain/")[1].split("-")[0]: c for c in started if "/pretrain/" in c.train.out_dir}
    assert len(pre) == 2 and all("pretrain_data" in c.data.root for c in pre.values())
    for cfg in runs:  # every teacher and student run starts from its role's pretrained backbone
        role = "main" if "/teachers/" in cfg.train.out_dir else "student"
        assert cfg.model.backbone_weights.endswith("last.pt") and f"/pretrain/{role}-" in cfg.model.backbone_weights
    assert set(results["pretrain"]) == {"main", "student"}
    from ftpdet.bench.report import pretraining

    assert pretraining(results["schedule"]).startswith("Every backbone starts from a pretraining run of its model (1 epochs")
    assert pretraining(PRESETS["quick"].__dict__ | {"pretrain_epochs": 0}) == "Backbones start from random weights. "
    plain = AccuracyBench(PRESETS["smoke"], tmp_path / "b", progress=False, only=("main",))
    plain.prepare_data()
    assert plain.teacher_key("main")[1] != bench.teacher_key("main")[1]  # pretraining is in the key
    started.clear()
    AccuracyBench(preset, tmp_path / "b", progress=False, only=("main",))()
    assert started == []  # everything reused


def test_regime_rows_measure_plateau_gap_and_spread_from_the_runs():
    def rows(table, by_label):
        recs, out = [], []
        for label, aps in by_label.items():
            keys = [f"{table}-{label}-{i}" for i in range(len(aps))]
            recs += [{"key": k, "seed": i, "AP": ap, "status": "done"} for i, (k, ap) in enumerate(zip(keys, aps))]
            out.append({"label": label, "method": label, "keys": keys})
        return recs, out

    main_recs, main_rows = rows("main", {"student": [15.0, 16.0, 15.5], "kd": [15.5, 16.4, 16.1],
                                         "ld": [16.0, 16.5, 16.5]})
    plateau_recs, plateau_rows = rows("plateau", {"student, 2x schedule": [15.4, 16.5, 15.8]})
    data = {"records": main_recs + plateau_recs, "tables": {"main": main_rows, "plateau": plateau_rows},
            "teachers": {"main": {"AP": 26.0}}}
    lines = regime(Results(data))
    # doubling: +0.4, +0.5, +0.3 -> mean 0.4, interval 0.4 +- 4.303 * 0.1 / sqrt(3) = [+0.15, +0.65]: below 1
    assert lines[2] == ("| the plain student has plateaued | twice its schedule adds < 1 AP | +0.40 [+0.15, +0.65] AP "
                        "over 3 paired seed(s) | yes |")
    assert lines[3] == "| the teacher is a few AP above the student | 5-15 AP | 10.50 AP | yes |"
    # pairs: kd-student (0.5, 0.4, 0.6) std 0.1; ld-student (1, 0.5, 1) std 0.289; ld-kd (0.5, 0.1, 0.4) std 0.208
    assert "median 0.21, largest 0.29 AP over 3 pairs of rows | yes |" in lines[4]
    question, measured, answer = every_baseline_helps(Results(data))
    assert measured == "kd +0.50 [+0.25, +0.75]; ld +0.83 [+0.12, +1.55]" and answer == "yes"
    data["records"][8]["AP"] = 15.5  # ld's seed 2 falls to the student's level: its interval now holds 0
    assert every_baseline_helps(Results(data))[2] == "no: ld (not resolved)"


def test_time_table_counts_each_run_once_and_sums_the_parts():
    recs = [{"key": k, "seed": 0, "AP": 1.0, "status": "done", "wall_seconds": w}
            for k, w in (("s", 360.0), ("kd", 720.0), ("x2", 1800.0))]
    recs[1]["eval_seconds"] = 360.0  # evaluated again later, on another validation set: its time counts too
    data = {"records": recs, "teachers": {"main": {"status": "done", "wall_seconds": 3600.0}},
            "pretrain": {"student": {"status": "done", "wall_seconds": 1800.0}},
            "tables": {"main": [{"label": "student", "method": "student", "keys": ["s"]},
                                {"label": "kd", "method": "kd", "keys": ["kd"]}],
                       "hetero": [{"label": "student", "method": "student", "keys": ["s"]}],  # shared: counted once
                       "plateau": [{"label": "student, 2x schedule", "method": "student", "keys": ["x2"]}]}}
    assert time_table(Results(data)) == [
        "| part | runs | hours |", "|---|---|---|",
        "| pretraining (one run per model, reused) | 1 | 0.50 |",
        "| teachers | 1 | 1.00 |",
        "| main (student runs) | 2 | 0.40 |",
        "| plateau (student runs not in a table above) | 1 | 0.50 |",
        "| total | | 2.40 |",
    ]


def test_the_report_says_which_runs_were_evaluated_again():
    from ftpdet.bench.report import remeasured

    recs = [{"key": "a", "status": "done", "eval_key": "new", "history_eval_key": "old"},
            {"key": "b", "status": "done", "eval_key": "new", "history_eval_key": "new"},  # trained on this set
            {"key": "c", "status": "failed"}]
    data = {"records": recs, "teachers": {"main": {"status": "done", "eval_key": "new", "history_eval_key": "old"}}}
    assert remeasured(data).startswith("2 runs (teachers included) trained while the validation set was another one")
    assert remeasured({"records": recs[1:], "teachers": {}}) == ""
