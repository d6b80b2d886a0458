"""Detector wiring: shapes per level, tower access for distillation, backbone weights from a local file."""

import pytest
import torch
import torchvision
from pydantic import ValidationError

from ftpdet.sections import ModelConfig
from ftpdet.errors import CheckpointError, ConfigError
from ftpdet.models.backbones import build_backbone
from ftpdet.models.detector import build_detector

SMALL = dict(fpn_channels=32, head_channels=32, num_convs=2, reg_max=7)


@pytest.mark.parametrize("backbone,strides", [("resnet18", [8, 16, 32]), ("mobilenet_v3_small", [8, 16, 32, 64, 128])])
def test_output_shapes_per_level(backbone, strides):
    model = build_detector(ModelConfig(backbone=backbone, strides=strides, **SMALL), num_classes=5).eval()
    out = model(torch.randint(0, 255, (2, 3, 128, 128), dtype=torch.uint8))
    for level, s in enumerate(strides):
        hw = (128 // s, 128 // s)
        assert out["cls_logits"][level].shape == (2, 5, *hw)
        assert out["edge_logits"][level].shape == (2, 4 * 8, *hw)
        assert len(out["cls_tower"][level]) == 3 and out["cls_tower"][level][2].shape == (2, 32, *hw)
    scores, boxes = model.decode(out)
    n = sum((128 // s) ** 2 for s in strides)
    assert scores.shape == (2, n, 5) and boxes.shape == (2, n, 4)


def test_forward_from_any_tower_layer_matches_the_full_head():
    model = build_detector(ModelConfig(backbone="resnet18", **SMALL), num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64) * 255)
        for level in range(3):
            for k in range(3):
                cls, edges = model.head.forward_from(level, k, out["cls_tower"][level][k], out["reg_tower"][level][k])
                assert torch.allclose(cls, out["cls_logits"][level], atol=1e-6)
                assert torch.allclose(edges, out["edge_logits"][level], atol=1e-6)


def test_initial_scores_start_at_the_prior():
    model = build_detector(ModelConfig(backbone="mobilenet_v3_small", **SMALL), num_classes=4).eval()
    scores, _ = model.decode(model(torch.rand(1, 3, 64, 64) * 255))
    assert scores.mean().item() == pytest.approx(0.01, rel=0.2)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_backbone_weights_from_a_local_file(tmp_path, name):
    torch.manual_seed(123)
    reference = torchvision.models.get_model(name)
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(0)  # a different random init, overwritten by the file
    backbone = build_backbone(name, weights=str(path))
    loaded = dict(backbone.named_parameters())
    ref = dict(reference.named_parameters())
    assert len(loaded) > 10
    for key, value in loaded.items():
        ref_key = key.removeprefix("body.").removeprefix("features.")
        ref_key = ref_key if ref_key in ref else f"features.{ref_key}"
        assert torch.equal(value, ref[ref_key]), key


def test_wrong_backbone_weights_are_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    with pytest.raises(CheckpointError, match="not resnet18 weights"):
        build_backbone("resnet18", weights=str(path))
    with pytest.raises(ConfigError, match="backbone weights file not found"):
        build_backbone("resnet18", weights=str(tmp_path / "missing.pth"))


def test_mobilenet_width_mult_makes_a_smaller_student():
    big = build_detector(ModelConfig(backbone="resnet18"), 10)
    small = build_detector(ModelConfig(backbone="mobilenet_v3_small", width_mult=0.5, fpn_channels=48,
                                       head_channels=48, num_convs=1), 10)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(big) > 20 * n(small)


def test_a_backbone_starts_from_a_trained_detectors_backbone(tiny_data, teacher_ckpt, tmp_path):
    # Pretraining on another task, as real detectors start from ImageNet: model.backbone_weights names an ftpdet
    # checkpoint and the new detector's backbone starts from its backbone's tensors (nothing else is taken).
    from ftpdet.checkpoint import load_checkpoint
    from ftpdet.errors import CheckpointError
    from ftpdet.models.detector import build_detector
    from ftpdet.sections import ModelConfig

    ckpt = load_checkpoint(teacher_ckpt)
    stored = ckpt["config"]["model"]  # the tiny teacher: mobilenet_v3_small at width 1.0
    cfg = ModelConfig(backbone=stored["backbone"], width_mult=stored["width_mult"], backbone_weights=str(teacher_ckpt),
                      fpn_channels=16, head_channels=16)
    model = build_detector(cfg, 4)
    own = {k: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
    assert own and all(torch.equal(model.state_dict()[k], v) for k, v in own.items())
    fresh = build_detector(cfg.model_copy(update={"backbone_weights": None}), 4)
    assert not all(torch.equal(fresh.state_dict()[k], v) for k, v in own.items())  # not what random init gives
    with pytest.raises(CheckpointError, match="its backbone is 'mobilenet_v3_small', not 'resnet18'"):
        build_detector(cfg.model_copy(update={"backbone": "resnet18"}), 4)
    with pytest.raises(CheckpointError, match="does not fit mobilenet_v3_small with width_mult 0.5"):
        build_detector(cfg.model_copy(update={"width_mult": 0.5}), 4)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_050", "efficientnet_b0"])
def test_a_timm_backbone_feeds_the_fpn_at_strides_8_16_32(name):
    model = build_detector(ModelConfig(backbone=f"timm:{name}", **SMALL), num_classes=3).eval()
    out = model(torch.randint(0, 255, (1, 3, 96, 96), dtype=torch.uint8))
    assert [f.shape[-1] for f in out["fpn"]] == [12, 6, 3]
    timm_model = __import__("timm").create_model(name, features_only=True)
    strides = timm_model.feature_info.reduction()
    assert [strides[i] for i in model.backbone.taps] == [8, 16, 32]
    assert model.backbone.out_channels == [timm_model.feature_info.channels()[i] for i in model.backbone.taps]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_weights_from_a_local_file(tmp_path, suffix):
    # What timm's pretrained weights are, offline: a full timm model's state_dict (classifier included) in a file.
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    reference = timm.create_model("mobilenetv3_small_050")
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(reference.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    torch.manual_seed(0)
    backbone = build_backbone("timm:mobilenetv3_small_050", weights=str(path))
    ref = reference.state_dict()
    loaded = {k.removeprefix("body."): v for k, v in backbone.state_dict().items()}
    assert len(loaded) > 50 and all(torch.equal(v, ref[k]) for k, v in loaded.items())
    fresh = build_backbone("timm:mobilenetv3_small_050")
    assert not torch.equal(fresh.state_dict()["body.conv_stem.weight"], ref["conv_stem.weight"])


def test_wrong_timm_inputs_are_refused(tmp_path):
    import timm

    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(CheckpointError, match="other.pth: does not fit timm:mobilenetv3_small_050 .size mismatch"):
        build_backbone("timm:mobilenetv3_small_050", weights=str(path))
    state = timm.create_model("resnet18").state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")}, path)
    with pytest.raises(CheckpointError, match="not timm:resnet18 weights: .* missing, e.g. 'layer4"):
        build_backbone("timm:resnet18", weights=str(path))
    # ResNet-34 has every ResNet-18 tensor name with the same shapes, and more blocks: refused, not half-loaded
    torch.save(timm.create_model("resnet34").state_dict(), path)
    with pytest.raises(CheckpointError, match="not timm:resnet18 weights: .* tensors it does not have, e.g. 'layer1.2"):
        build_backbone("timm:resnet18", weights=str(path))
    with pytest.raises(ConfigError, match="take their width from the name"):
        build_backbone("timm:resnet18", width_mult=0.5)
    with pytest.raises(ValidationError, match="timm has no model 'resnet19'"):
        ModelConfig(backbone="timm:resnet19")
    with pytest.raises(ValidationError, match="unknown backbone 'resnet19'"):
        ModelConfig(backbone="resnet19")
