"""The CLI: commands listed, user errors are one line with exit code 2, the demo runs end to end."""

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ftpdet.cli import app
from ftpdet.checkpoint import load_checkpoint
from ftpdet.config import load_config

runner = CliRunner()


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "ftpdet", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("data", "train", "eval", "predict", "demo"):
        assert command in out
    assert "synth" in runner.invoke(app, ["data", "--help"]).output


def test_data_synth_and_stats(tmp_path):
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "d"), "--num-train", "5", "--num-val", "2",
                              "--image-size", "64", "--classes", "8"])
    assert res.exit_code == 0, res.output
    ann = tmp_path / "d" / "annotations" / "instances_train.json"
    n_boxes = len(json.loads(ann.read_text())["annotations"])
    res = runner.invoke(app, ["data", "stats", "--ann", str(ann), "--out", str(tmp_path / "stats")])
    assert res.exit_code == 0, res.output
    assert "hexagon" in res.output and f"{'all':<16}{n_boxes:>8}" in res.output
    stats = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert sum(stats["per_class"].values()) == n_boxes == sum(stats["sizes"].values())
    assert (tmp_path / "stats" / "stats.png").stat().st_size > 1000


def test_bad_synth_arguments_are_rejected(tmp_path):
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--classes", "11"])
    assert res.exit_code == 2


def one_line_error(res, text):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], res.output
    assert "Traceback" not in res.output


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    one_line_error(runner.invoke(app, ["train", str(tmp_path / "missing.yaml")]), "missing.yaml: config file not found")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 1\n  lrr: 3\n")
    one_line_error(runner.invoke(app, ["train", str(cfg)]), "unknown key 'train.lrr' (did you mean 'lr'?)")
    one_line_error(runner.invoke(app, ["train", "demo_student", "--set", "train.epochs=zero"]), "'train.epochs'")
    one_line_error(runner.invoke(app, ["train", "demo_student", "--set", f"data.root={tmp_path}/nodata",
                                       "--set", f"train.out_dir={tmp_path}/run"]), "annotation file not found")
    one_line_error(runner.invoke(app, ["eval", str(tmp_path / "none.pt"), "--ann", "a.json", "--images", "."]),
                   "checkpoint not found")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    one_line_error(runner.invoke(app, ["data", "stats", "--ann", str(bad_json)]), "not valid JSON")


def test_demo_trains_its_own_shorter_schedule_from_the_shipped_backbones():
    """The demo's runs: its own schedule (the configs keep theirs) and the backbones pretrained on the separate
    built-in set, shipped in the package (scripts/demo_backbones.py): each file fits its architecture and loads
    exactly, bf16 weights cast to float32."""
    import torch

    from ftpdet.demo import DEMO_SCHEDULE, STUDENT, TEACHER, _config, backbone_file
    from ftpdet.files import safe_load
    from ftpdet.models.detector import build_detector

    schedule = dict(o.split("=") for o in DEMO_SCHEDULE)
    assert load_config(TEACHER).train.epochs != int(schedule["train.epochs"])  # the demo's, not the config's
    for name, role in ((TEACHER, "teacher"), (STUDENT, "student")):
        cfg = _config(name, Path("runs/x"), Path("data/x"), quick=False, backbone=role)
        assert (cfg.train.epochs, cfg.train.eval_every, cfg.data.root) == (
            int(schedule["train.epochs"]), int(schedule["train.eval_every"]), "data/x")
        assert cfg.model.backbone_weights == str(backbone_file(role))
        shipped = safe_load(backbone_file(role), "demo backbone")
        assert shipped["config"]["model"]["backbone"] == cfg.model.backbone and shipped["provenance"]["steps"] > 0
        model = build_detector(cfg.model, 10)
        for key, value in model.state_dict().items():
            if key.startswith("backbone."):
                assert torch.equal(value, shipped["model"][key].to(value.dtype)), key


def test_demo_quick_runs_end_to_end_and_predict_draws(tmp_path):
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {"teacher", "student", "FTPD student"}
    assert summary["runs"]["teacher"]["params_m"] > 8 * summary["runs"]["student"]["params_m"]  # 3.7 M vs 0.41 M
    assert "| teacher |" in res.output and "| student |" in res.output and "| FTPD student |" in res.output
    assert load_checkpoint(out / "ftpd" / "last.pt")["method"] == "ftpd"
    for name in ("report.md", "comparison.png", "teacher/curves.png", "student/last.pt", "temperature/000001_temperature.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "predictions").glob("*.png"))) == 4
    assert {r["epochs"] for r in summary["runs"].values()} == {1}  # the smoke schedule, stated in the report
    assert "each run trained 1 epoch." in (out / "report.md").read_text()

    image = sorted((out / "data" / "val").glob("*.png"))[0]
    res = runner.invoke(app, ["predict", str(out / "student" / "last.pt"), str(image), "--out", str(tmp_path / "vis"),
                              "--score-thr", "0.0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "vis" / f"{image.stem}_pred.png").is_file()
    one_line_error(runner.invoke(app, ["predict", str(out / "student" / "last.pt"), str(tmp_path / "nope.png"),
                                       "--out", str(tmp_path / "vis")]), "nope.png: image file not found")
