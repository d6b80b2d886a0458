"""The GPU configs (mmdetection's GFL settings) and what they switch on, run on this CPU at a small size: the
keep-ratio and multi-scale resize, frozen stages with BatchNorm in eval mode, the step schedule with mmdetection's
warmup, fp16 autocast with a GradScaler, and the distillation pair."""

import json
import math

import pytest
import torch

from ftpdet.config import load_config
from ftpdet.engine.train import build_datasets, lr_factor, train
from ftpdet.models.detector import build_detector

# Small enough for a CPU test; everything else is the config's own (backbones without downloaded weights).
SMALL = ["model.backbone_weights=null", "data.image_size=32", "data.max_size=64", "train.epochs=2",
         "train.lr_steps=[1]", "train.batch_size=8", "train.warmup_steps=2", "train.log_every=1", "train.device=cpu",
         "data.cache_images=true"]  # tiny images: cached where the resize allows it


def small(name, root, out, *extra):
    cfg = load_config(name, [f"data.root={root}", f"train.out_dir={out}", *SMALL, *extra])
    return cfg


@pytest.mark.parametrize("name", ["gfl_r50_coco_1x", "gfl_r101_coco_2x"])
def test_the_gpu_configs_are_mmdetections_gfl_and_train_here(name, tiny_data, tmp_path):
    full = load_config(name, [])
    m, d, t = full.model, full.data, full.train
    assert (m.fpn_channels, m.head_channels, m.num_convs, m.reg_max, m.anchor_scale) == (256, 256, 4, 16, 8.0)
    assert m.strides == [8, 16, 32, 64, 128] and not m.fpn_relu_before_p7 and (m.frozen_stages, m.norm_eval) == (1, True)
    assert (d.resize, d.image_size, d.max_size) == ("keep_ratio", 800, 1333)
    assert (t.optimizer, t.lr, t.batch_size, t.momentum, t.weight_decay) == ("sgd", 0.01, 16, 0.9, 0.0001)
    assert (t.lr_schedule, t.warmup_steps, t.warmup_ratio) == ("step", 500, 0.001)
    assert (t.epochs, t.lr_steps, d.multiscale) == ((12, [8, 11], None) if "1x" in name else (24, [16, 22], [480, 800]))
    extra = ["data.multiscale=[32,48]"] if d.multiscale else []
    cfg = small(name, tiny_data, tmp_path / "run", *extra)
    train_ds, _ = build_datasets(cfg)
    assert (train_ds._cache is None) == bool(d.multiscale)  # a multi-scale training set is resized on the fly
    result = train(cfg, progress=False)
    lines = [json.loads(ln) for ln in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    lrs = [r["lr"] for r in lines if "lr" in r]  # the lr of the next step: warmup over 2 steps from 0.001 x lr,
    assert lrs[0] == pytest.approx(0.01 * (0.001 + 0.999 * 1 / 2))  # then 10x down once epoch 1 (2 steps) is done
    assert lrs[1:] == pytest.approx([0.001, 0.001, 0.001])


def test_the_distillation_pair_distils_the_student_from_the_teacher_config(tiny_data, tmp_path):
    teacher = train(small("gfl_r101_coco_2x", tiny_data, tmp_path / "t", "train.epochs=1", "train.lr_steps=[]",
                          "train.lr_schedule=cosine", "data.multiscale=null"), progress=False).out_dir / "last.pt"
    cfg = small("gfl_r50_from_r101_coco_1x", tiny_data, tmp_path / "s", f"distill.teacher={teacher}",
                "train.epochs=1", "train.lr_steps=[]", "train.lr_schedule=cosine")
    assert cfg.distill.method == "ftpd"
    result = train(cfg, progress=False)
    lines = [json.loads(ln) for ln in (result.out_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in ln]
    assert lines and all(math.isfinite(r["loss"]) for r in lines) and any(k.startswith("distill_") for k in lines[0])


def test_frozen_stages_keep_their_weights_and_statistics(tiny_data, tmp_path):
    cfg = small("gfl_r50_coco_1x", tiny_data, tmp_path / "run", "model.backbone=resnet18", "model.fpn_channels=32",
                "model.head_channels=32", "model.num_convs=1", "train.epochs=1", "train.lr_steps=[]",
                "train.lr_schedule=cosine", "train.warmup_steps=0", "train.lr=0.05")  # steps large enough to see
    torch.manual_seed(0)
    before = build_detector(cfg.model, 4).state_dict()
    after = torch.load(train(cfg, progress=False).out_dir / "last.pt", weights_only=True)["model"]
    for key in ("backbone.body.conv1.weight", "backbone.body.bn1.running_mean", "backbone.body.layer1.0.conv1.weight",
                "backbone.body.layer1.1.bn2.running_var"):
        assert torch.equal(before[key], after[key]), key  # the stem and layer1: frozen
    assert not torch.equal(before["backbone.body.layer2.0.conv1.weight"], after["backbone.body.layer2.0.conv1.weight"])
    # norm_eval: layer2's BatchNorm trains its affine weights but keeps its statistics
    assert torch.equal(before["backbone.body.layer2.0.bn1.running_mean"], after["backbone.body.layer2.0.bn1.running_mean"])
    assert not torch.equal(before["backbone.body.layer2.0.bn1.weight"], after["backbone.body.layer2.0.bn1.weight"])


def test_fp16_trains_with_a_grad_scaler_that_resumes(tiny_data, tmp_path):
    from tests.conftest import tiny_config

    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=2", "train.amp=fp16")
    train(cfg, progress=False, stop_after=1)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["grad_scaler"]["scale"] > 0  # the scaler's state is in the checkpoint
    result = train(cfg, progress=False, resume=True)
    lines = [json.loads(ln) for ln in (result.out_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in ln]
    assert len(lines) == 4 and all(math.isfinite(r["loss"]) for r in lines)


def test_the_step_schedule_is_mmdetections():
    tc = load_config(None, ["train.lr_schedule=step", "train.epochs=12", "train.lr_steps=[8,11]",
                            "train.warmup_steps=500", "train.warmup_ratio=0.001"]).train
    f = [lr_factor(s, 1200, tc, steps_per_epoch=100) for s in (0, 250, 500, 799, 800, 1099, 1100)]
    assert f == pytest.approx([0.001, 0.001 + 0.999 * 0.5, 1.0, 1.0, 0.1, 0.1, 0.01])
    with pytest.raises(Exception, match="lr_schedule step needs lr_steps"):
        load_config(None, ["train.lr_schedule=step", "train.epochs=12", "train.lr_steps=[8,8]"])
    default = load_config(None, []).train  # the cosine default, bit for bit what it was: warmup from 0.1, then cosine
    W = default.warmup_steps
    assert all(lr_factor(s, 1000, default) == 0.1 + 0.9 * s / W for s in range(W))
    assert all(lr_factor(s, 1000, default) == 0.05 + (1 - 0.05) * (0.5 * (1 + math.cos(math.pi * ((s - W) / (1000 - W)))))
               for s in range(W, 1001))


def test_loader_workers_default_to_none_on_cpu_and_eight_on_cuda():
    from ftpdet.engine.train import loader_workers

    assert loader_workers(None, torch.device("cpu")) == 0
    assert 1 <= loader_workers(None, torch.device("cuda")) <= 8
    assert loader_workers(3, torch.device("cpu")) == 3
