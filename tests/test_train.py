"""The training engine: it learns, resumes exactly, stops cleanly on a non-finite loss, writes its outputs."""

import json
import math
import os
import signal

import pytest
import torch

from ftpdet.checkpoint import load_checkpoint
from ftpdet.engine.train import lr_factor, train
from ftpdet.errors import ConfigError, Interrupted, TrainingError
from ftpdet.sections import TrainConfig
from tests.conftest import tiny_config


def test_overfits_a_handful_of_images(overfit_run):
    """Proof that the detector learns: 8 images, no augmentation, evaluated on the same 8 images."""
    result, _ = overfit_run
    assert result.last_metrics["AP50"] >= 0.9, result.last_metrics


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_data, tmp_path):
    full = train(tiny_config(tiny_data, tmp_path / "full", "train.epochs=3"), progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "sliced", "train.epochs=3")
    train(cfg, stop_after=1, progress=False)
    assert load_checkpoint(tmp_path / "sliced" / "last.pt")["epoch"] == 1
    resumed = train(cfg, resume=True, progress=False)
    a = load_checkpoint(full.out_dir / "last.pt")
    b = load_checkpoint(resumed.out_dir / "last.pt")
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["history"] == b["history"]
    # metrics.jsonl of the sliced run holds each step exactly once.
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "sliced" / "metrics.jsonl").read_text().splitlines()
             if "eval" not in ln]
    assert steps == list(range(1, 7))


def test_a_stop_signal_during_the_final_evaluation_is_not_lost(tiny_data, tmp_path, monkeypatch):
    """SIGTERM while the last evaluation runs: the run still finishes whole (last.pt at its last step, eval.json),
    then stops the program instead of returning as if nothing came (a bench would go on to its next run, and
    only a second signal stopped it)."""
    import ftpdet.engine.train as engine

    real = engine.evaluate_epoch

    def signalled(run, epoch, log, progress):
        if epoch + 1 == run.cfg.train.epochs:
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler takes it: the test process lives on
        return real(run, epoch, log, progress)

    monkeypatch.setattr(engine, "evaluate_epoch", signalled)
    handler = signal.getsignal(signal.SIGTERM)
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=2")
    with pytest.raises(Interrupted, match="after the last step") as stopped:
        train(cfg, progress=False)
    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == handler
    out = tmp_path / "run"
    assert load_checkpoint(out / "last.pt")["step"] == 4  # 16 images / 8 per step x 2 epochs: nothing was cut
    last = json.loads((out / "eval.json").read_text())["last"]
    resumed = train(cfg, resume=True, progress=False)  # nothing left to train: the finished run's numbers
    assert resumed.history[-1]["step"] == 4 and resumed.last_metrics == last


def test_run_outputs(tiny_data, tmp_path):
    result = train(tiny_config(tiny_data, tmp_path / "run", "train.epochs=2"), progress=False)
    out = result.out_dir
    for name in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "config.yaml", "eval.json"):
        assert (out / name).is_file(), name
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["categories"]["names"] == ["circle", "triangle", "square", "pentagon"]
    assert ckpt["config"]["model"]["backbone"] == "mobilenet_v3_small"
    assert "optimizer" in ckpt and "optimizer" not in load_checkpoint(out / "best.pt")
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "loss_qfl", "loss_dfl", "loss_giou", "lr"} <= set(lines[0])
    assert sum("eval" in ln for ln in lines) == 2
    assert set(json.loads((out / "eval.json").read_text())["best"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}


def test_existing_run_needs_resume_or_overwrite(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=1")
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        train(cfg, progress=False)
    train(cfg, overwrite=True, progress=False)


def test_non_finite_loss_stops_with_a_clear_message(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=1", "loss.giou=.nan")
    with pytest.raises(TrainingError, match="non-finite loss at step 0 .*loss_giou.*no checkpoint was written yet"):
        train(cfg, progress=False)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(5, 110, cfg) == pytest.approx(0.55)
    assert lr_factor(10, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.55)  # half way through the cosine
    assert lr_factor(110, 110, cfg) == pytest.approx(0.1)


def test_evaluating_more_often_does_not_change_training(tiny_data, tmp_path):
    a = train(tiny_config(tiny_data, tmp_path / "a", "train.epochs=2", "train.eval_every=1"), progress=False)
    b = train(tiny_config(tiny_data, tmp_path / "b", "train.epochs=2", "train.eval_every=2"), progress=False)
    wa, wb = load_checkpoint(a.out_dir / "last.pt")["model"], load_checkpoint(b.out_dir / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_metrics_log_every_term_raw_and_weighted(tiny_data, teacher_ckpt, tmp_path):
    """One weight table, applied once: each logged term is its raw value times its configured weight, and the
    loss is the sum of the weighted terms. log_every=1, so each line holds one step's values."""
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=1", "loss.dfl=0.5", "distill.ld.cls_weight=4")
    train(cfg, teacher=teacher_ckpt, method="ld", progress=False)
    weights = {"loss_qfl": 1.0, "loss_dfl": 0.5, "loss_giou": 2.0, "distill_ld": 0.25, "distill_ld_vlr": 0.25,
               "distill_ld_cls": 4.0}
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"eval"' not in ln]
    assert len(lines) == 2
    for line in lines:
        for name, w in weights.items():
            assert line[name] == pytest.approx(w * line[f"{name}_raw"], rel=1e-5), name
        assert line["loss"] == pytest.approx(sum(line[name] for name in weights), rel=1e-5)
        assert line["distill_ld_cls_raw"] > 0 and line["loss_dfl_raw"] > 0


def test_a_teacher_named_in_the_config_distils(tiny_data, teacher_ckpt, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=1", f"distill.teacher={teacher_ckpt}",
                      "distill.method=kd")
    result = train(cfg, progress=False)
    ckpt = load_checkpoint(result.out_dir / "last.pt")
    assert ckpt["method"] == "kd" and ckpt["teacher"] == str(teacher_ckpt)
    assert '"distill_kd_cls"' in (result.out_dir / "metrics.jsonl").read_text()
    assert ckpt["config"]["distill"]["teacher"] == str(teacher_ckpt)  # the resolved config records it


def test_weight_average_is_the_ramped_exponential_moving_average():
    """W_ema <- d_n W_ema + (1 - d_n) W, d_n = decay * (1 - exp(-n / ramp)), from a copy of the first weights;
    integer buffers are copied."""
    import math

    from ftpdet.engine.step import weight_average

    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    ema = weight_average(model, decay=0.9, ramp_steps=3)
    expected = None
    for n, value in enumerate([1.0, 2.0, 4.0, -1.0]):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].num_batches_tracked.fill_(7 + n)
        ema.update_parameters(model)
        d = 0.9 * (1 - math.exp(-n / 3))
        expected = value if expected is None else d * expected + (1 - d) * value
        assert ema.module[0].weight[0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert ema.module[1].num_batches_tracked.item() == 10 and int(ema.n_averaged) == 4


def test_ema_weights_are_evaluated_saved_loaded_and_resumed_exactly(tiny_data, tmp_path):
    from ftpdet.checkpoint import load_model

    full = train(tiny_config(tiny_data, tmp_path / "full", "train.epochs=2", "train.ema=0.9"), progress=False)
    ckpt = load_checkpoint(full.out_dir / "last.pt")
    assert ckpt["ema_updates"] == ckpt["step"] == 4
    assert any(not torch.equal(ckpt["ema"][k], ckpt["model"][k]) for k in ckpt["model"] if ckpt["model"][k].is_floating_point())
    loaded = load_model(full.out_dir / "last.pt")[0].state_dict()
    assert all(torch.equal(loaded[k], ckpt["ema"][k]) for k in loaded)  # inference loads the average
    assert "ema" in load_checkpoint(full.out_dir / "best.pt")
    cfg = tiny_config(tiny_data, tmp_path / "sliced", "train.epochs=2", "train.ema=0.9")
    train(cfg, stop_after=1, progress=False)
    resumed = load_checkpoint(train(cfg, resume=True, progress=False).out_dir / "last.pt")
    assert all(torch.equal(resumed["ema"][k], ckpt["ema"][k]) for k in ckpt["ema"])
    assert resumed["history"] == ckpt["history"]  # evaluated on the same averaged weights
    plain = train(tiny_config(tiny_data, tmp_path / "plain", "train.epochs=2"), progress=False)
    raw = load_checkpoint(plain.out_dir / "last.pt")
    assert "ema" not in raw and all(torch.equal(raw["model"][k], ckpt["model"][k]) for k in raw["model"])  # same path


def test_each_model_runs_at_its_own_precision(tiny_data, teacher_ckpt, tmp_path, monkeypatch):
    # The student runs as train.* says (float32, channels_last), the teacher as distill.teacher_* says (float32,
    # default format; never its checkpoint's), and autocast is entered per model: a bf16 student cannot make the
    # teacher bf16. The run's config.yaml and checkpoint record both.
    from ftpdet.checkpoint import load_checkpoint
    from ftpdet.engine import train as train_module
    from ftpdet.engine.step import Trainee

    seen = {}
    original = Trainee.forward

    def spy(self, images, targets):
        seen["student_cl"] = self.student.backbone.features.get_submodule("0.0").weight.is_contiguous(
            memory_format=torch.channels_last)
        seen["teacher_cl"] = self.teacher.backbone.features.get_submodule("0.0").weight.is_contiguous(
            memory_format=torch.channels_last)
        seen["precisions"] = (self.precision, self.teacher_precision)
        out = self.student(self.precision.input(images))
        seen["student_out_cl"] = out["fpn"][0].is_contiguous(memory_format=torch.channels_last)
        return original(self, images, targets)

    monkeypatch.setattr(Trainee, "forward", spy)
    cfg = tiny_config(tiny_data, tmp_path / "s", "train.epochs=1", "train.amp=none", "train.channels_last=true",
                      "distill.teacher_amp=none", "distill.teacher_channels_last=false")
    train_module.train(cfg, progress=False, teacher=teacher_ckpt, method="kd")
    student, teacher = seen["precisions"]
    assert (student.amp, student.channels_last, teacher.amp, teacher.channels_last) == ("none", True, "none", False)
    assert seen["student_cl"] and seen["student_out_cl"] and not seen["teacher_cl"]
    rec = load_checkpoint(tmp_path / "s" / "last.pt")["precision"]
    assert rec["student"] == {"amp": "none", "channels_last": True} and rec["how"] == {"student": "set", "teacher": "set"}
    assert rec["teacher"] == {"amp": "none", "channels_last": False}


def test_precision_autocast_and_memory_format():
    from ftpdet.models.precision import Precision

    x = torch.randn(2, 3, 8, 8)
    conv = torch.nn.Conv2d(3, 4, 3)
    with Precision("bf16").autocast("cpu"):
        assert conv(x).dtype == torch.bfloat16
    with Precision("none").autocast("cpu"):
        assert conv(x).dtype == torch.float32
    cl = Precision(channels_last=True)
    assert cl.input(x).is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(memory_format=torch.channels_last)
    assert cl.prepare(conv).weight.is_contiguous(memory_format=torch.channels_last)
    assert Precision().input(x) is x


def test_every_method_trains_a_float32_student_from_a_bf16_teacher(tiny_data, tmp_path):
    """The lab pairs a float32 student with a bf16 teacher: every method (CrossKD's cross head re-runs the teacher's
    conv on the teacher's bf16 tower) must run that way and give finite losses."""
    from ftpdet.engine import train as train_module
    from ftpdet.methods import METHODS, NEEDS_UNLABELED

    deeper = ["model.width_mult=1.0", "model.fpn_channels=48", "model.head_channels=48", "model.num_convs=2"]
    teacher = train_module.train(tiny_config(tiny_data, tmp_path / "t", "train.epochs=1", "train.amp=bf16", *deeper),
                                 progress=False).out_dir / "last.pt"  # 2 convs: CrossKD taps layer 1, pre-ReLU
    for method in [*METHODS, "ftpd+pkd"]:
        unlabeled = [f"data.unlabeled={tiny_data / 'unlabeled'}"] if method in NEEDS_UNLABELED else []
        cfg = tiny_config(tiny_data, tmp_path / method.replace("+", "_"), "train.epochs=1", "train.amp=none",
                          "distill.teacher_amp=bf16", *unlabeled)
        result = train_module.train(cfg, progress=False, teacher=teacher, method=method)
        losses = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()
                  if '"loss"' in line]
        assert losses and all(math.isfinite(rec["loss"]) for rec in losses), method


def test_a_timm_student_distils_from_a_torchvision_teacher(tiny_data, teacher_ckpt, tmp_path):
    """model.backbone: timm:<name> trains and distils like a torchvision backbone: the methods meet the teacher at
    the FPN and the head, whose shapes do not depend on where the backbone comes from."""
    from ftpdet.checkpoint import load_checkpoint
    from ftpdet.engine import train as train_module

    for method in ("ftpd+pkd",):  # head responses and FPN features: where every method meets the teacher
        cfg = tiny_config(tiny_data, tmp_path / method.replace("+", "_"), "train.epochs=1",
                          "model.backbone=timm:mobilenetv3_small_050", "model.width_mult=1.0")
        result = train_module.train(cfg, progress=False, teacher=teacher_ckpt, method=method)
        losses = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()
                  if '"loss"' in line]
        assert losses and all(math.isfinite(rec["loss"]) for rec in losses), method
        assert any(rec.get("distill_pkd", 0) > 0 for rec in losses), method
        ckpt = load_checkpoint(result.out_dir / "last.pt")
        assert ckpt["config"]["model"]["backbone"] == "timm:mobilenetv3_small_050"
        assert any(k.startswith("backbone.body.") for k in ckpt["model"])
