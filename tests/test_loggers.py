"""engine/loggers.py and progress.py: TensorBoard gets what metrics.jsonl gets (read back from the event file), and
progress off a terminal is whole lines."""

import io
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ftpdet.engine.loggers import scalar_tags
from ftpdet.engine.train import train
from ftpdet.errors import ConfigError
from ftpdet.progress import LineProgress, progress_bar
from tests.conftest import tiny_config


def read_events(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_tensorboard_holds_every_term_lr_ap_and_drawn_predictions(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=2", "train.loggers=[jsonl, tensorboard]")
    train(cfg, progress=False)
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "eval" not in r]
    evals = [r for r in lines if "eval" in r]
    acc = read_events(tmp_path / "run" / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    # every raw and weighted term of the step, the total, lr and each COCO metric
    assert {"loss/qfl", "loss/dfl", "loss/giou", "loss_raw/qfl", "loss_raw/dfl", "loss_raw/giou", "loss/total",
            "lr", "eval/AP", "eval/AP50", "eval/APs"} <= tags
    # the same numbers as metrics.jsonl, at the same steps (event files store float32)
    qfl = {e.step: e.value for e in acc.Scalars("loss/qfl")}
    assert qfl.keys() == {r["step"] for r in steps}
    assert all(qfl[r["step"]] == pytest.approx(r["loss_qfl"], rel=1e-6) for r in steps)
    raw = {e.step: e.value for e in acc.Scalars("loss_raw/giou")}
    assert all(raw[r["step"]] == pytest.approx(r["loss_giou_raw"], rel=1e-6) for r in steps)
    ap = [(e.step, e.value) for e in acc.Scalars("eval/AP")]
    assert ap == [(r["step"], pytest.approx(100 * r["eval"]["AP"], rel=1e-6)) for r in evals]
    # the first validation images with their detections, at each evaluation, upscaled for legibility
    assert {"predictions/0", "predictions/3"} <= set(acc.Tags()["images"])
    shots = acc.Images("predictions/0")
    assert [s.step for s in shots] == [r["step"] for r in evals]
    assert shots[0].width >= 384 and shots[0].height >= 384  # 64 px images drawn at 6x


def test_a_run_logged_to_a_file_has_lines_not_redrawn_bars(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from ftpdet.cli import app
    from tests.conftest import TINY_MODEL

    sets = [f"data.root={tiny_data}", "data.image_size=64", f"train.out_dir={tmp_path / 'run'}", "train.batch_size=8",
            "train.epochs=2", *TINY_MODEL]
    res = CliRunner().invoke(app, ["train", "demo_student", *[a for s in sets for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output
    lines = res.output.splitlines()
    assert any(ln.startswith("epoch 1/2: 2/2 it in ") for ln in lines), res.output  # one line per epoch
    assert any(ln.startswith("epoch 2/2  AP ") for ln in lines), res.output  # and the evaluation's


def test_scalar_tags_name_each_term_by_kind():
    record = {"step": 7, "epoch": 1, "lr": 0.01, "loss": 2.5, "loss_qfl": 1.0, "loss_qfl_raw": 1.0, "distill_kd": 0.5,
              "distill_kd_raw": 0.25}
    assert scalar_tags(record) == {"lr": 0.01, "loss/total": 2.5, "loss/qfl": 1.0, "loss_raw/qfl": 1.0,
                                   "loss/distill_kd": 0.5, "loss_raw/distill_kd": 0.25}


def test_loggers_without_jsonl_is_a_config_error(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="jsonl is the run's record"):
        tiny_config(tiny_data, tmp_path / "run", "train.loggers=[tensorboard]")


def test_off_a_terminal_progress_is_whole_lines():
    out = io.StringIO()  # not a terminal
    bar = progress_bar(range(5), desc="epoch 1/3", unit="it", stream=out)
    assert isinstance(bar, LineProgress)
    for i in bar:
        bar.set_postfix({"qfl": f"{0.5:.3f}"})
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    assert text.count("\n") == 1  # one line for a short loop: when it ends
    assert text.startswith("epoch 1/3: 5/5 it in ") and text.rstrip().endswith("qfl=0.500")


def test_a_long_loop_prints_a_line_per_interval_and_a_silent_one_prints_none():
    out = io.StringIO()
    bar = progress_bar(range(4), desc="epoch 2/2", total=4, unit="it", stream=out, interval=0.0)
    for _ in bar:
        pass
    bar.close()
    assert out.getvalue().splitlines()[0].startswith("epoch 2/2: 1/4 it in ")
    assert len(out.getvalue().splitlines()) == 5  # every item (interval 0) and the closing line
    quiet = io.StringIO()
    assert list(progress_bar(range(3), desc="eval", stream=quiet, lines=False)) == [0, 1, 2]
    assert quiet.getvalue() == ""


def test_a_resumed_epoch_counts_from_where_it_stopped():
    out = io.StringIO()
    bar = progress_bar(range(2), desc="epoch 1/1", total=5, initial=3, unit="it", stream=out)
    list(bar)
    bar.close()
    assert out.getvalue().startswith("epoch 1/1: 5/5 it in ")
