"""`ftpdet import mmdet`: a state dict laid out as mmdetection's GFL (key names and shapes written here from
mmdetection's ResNet, FPN and GFLHead sources, not from the importer's rules) maps onto ftpdet's model exactly, and
the imported model computes what mmdetection's forward computes (written out below with torch.nn.functional).

mmdetection itself (mmcv's compiled ops) cannot be installed on this machine, so the reference forward is this
file's transcription of mmdetection's FPN.forward and GFLHead.forward_single; docs/tutorial.md says so."""

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from typer.testing import CliRunner

from ftpdet.checkpoint import load_model
from ftpdet.cli import app
from ftpdet.errors import CheckpointError
from ftpdet.import_mmdet import import_mmdet

FPN_CH, HEAD_CH, CONVS, REG_MAX, LEVELS = 64, 64, 2, 16, 5
CLASSES = ("cat", "dog", "bird")


def mmdet_gfl_state(num_classes=3, depth=18, seed=0):
    """A GFL R-18 state dict with mmdetection's names: backbone.* (its ResNet keeps torchvision's names),
    neck.lateral_convs.i.conv / neck.fpn_convs.i.conv (FPN start_level=1, add_extra_convs='on_output', num_outs=5),
    bbox_head.{cls,reg}_convs.i.conv (no bias) + .gn, bbox_head.gfl_cls / gfl_reg, bbox_head.scales.l.scale."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g) * 0.05  # noqa: E731
    resnet = torchvision.models.get_model(f"resnet{depth}")
    state = {f"backbone.{k}": v.clone() for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    widths = [128, 256, 512] if depth < 50 else [512, 1024, 2048]
    for i, c in enumerate(widths):
        state[f"neck.lateral_convs.{i}.conv.weight"] = rnd(FPN_CH, c, 1, 1)
        state[f"neck.lateral_convs.{i}.conv.bias"] = rnd(FPN_CH)
    for i in range(LEVELS):
        state[f"neck.fpn_convs.{i}.conv.weight"] = rnd(FPN_CH, FPN_CH, 3, 3)
        state[f"neck.fpn_convs.{i}.conv.bias"] = rnd(FPN_CH)
    for branch in ("cls", "reg"):
        for i in range(CONVS):
            state[f"bbox_head.{branch}_convs.{i}.conv.weight"] = rnd(HEAD_CH, FPN_CH if i == 0 else HEAD_CH, 3, 3)
            state[f"bbox_head.{branch}_convs.{i}.gn.weight"] = 1 + rnd(HEAD_CH)
            state[f"bbox_head.{branch}_convs.{i}.gn.bias"] = rnd(HEAD_CH)
    state["bbox_head.gfl_cls.weight"] = rnd(num_classes, HEAD_CH, 3, 3)
    state["bbox_head.gfl_cls.bias"] = rnd(num_classes) - 4.6
    state["bbox_head.gfl_reg.weight"] = rnd(4 * (REG_MAX + 1), HEAD_CH, 3, 3)
    state["bbox_head.gfl_reg.bias"] = rnd(4 * (REG_MAX + 1))
    for level in range(LEVELS):
        state[f"bbox_head.scales.{level}.scale"] = torch.tensor(1.0 + 0.1 * level)
    return state, resnet


def mmdet_forward(state, resnet, x):
    """mmdetection's GFL forward on normalised images x: ResNet C3..C5 -> FPN.forward -> GFLHead.forward_single."""
    resnet.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")},
                           strict=False)
    resnet.eval()
    h = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    c2 = resnet.layer1(h)
    c3 = resnet.layer2(c2)
    c4 = resnet.layer3(c3)
    c5 = resnet.layer4(c4)
    conv = lambda t, name, **kw: F.conv2d(t, state[f"{name}.weight"], state.get(f"{name}.bias"), **kw)  # noqa: E731
    laterals = [conv(c, f"neck.lateral_convs.{i}.conv") for i, c in enumerate((c3, c4, c5))]
    for i in range(2, 0, -1):  # top-down: nearest upsampling to the lower level's size
        laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
    outs = [conv(lat, f"neck.fpn_convs.{i}.conv", padding=1) for i, lat in enumerate(laterals)]
    outs.append(conv(outs[-1], "neck.fpn_convs.3.conv", stride=2, padding=1))  # on_output
    outs.append(conv(outs[-1], "neck.fpn_convs.4.conv", stride=2, padding=1))  # relu_before_extra_convs=False
    cls_scores, bbox_preds = [], []
    for level, feat in enumerate(outs):
        c, r = feat, feat
        for i in range(CONVS):
            c = F.relu(F.group_norm(conv(c, f"bbox_head.cls_convs.{i}.conv", padding=1), 32,
                                    state[f"bbox_head.cls_convs.{i}.gn.weight"], state[f"bbox_head.cls_convs.{i}.gn.bias"]))
            r = F.relu(F.group_norm(conv(r, f"bbox_head.reg_convs.{i}.conv", padding=1), 32,
                                    state[f"bbox_head.reg_convs.{i}.gn.weight"], state[f"bbox_head.reg_convs.{i}.gn.bias"]))
        cls_scores.append(conv(c, "bbox_head.gfl_cls", padding=1))
        bbox_preds.append(conv(r, "bbox_head.gfl_reg", padding=1) * state[f"bbox_head.scales.{level}.scale"])
    return cls_scores, bbox_preds


def save_mmdet(tmp_path, state, classes=CLASSES, name="gfl.pth"):
    path = tmp_path / name
    torch.save({"meta": {"CLASSES": classes, "epoch": 12, "mmdet_version": "2.25.0"}, "state_dict": state}, path)
    return path


def test_an_mmdet_gfl_checkpoint_maps_exactly_and_computes_mmdets_outputs(tmp_path):
    state, resnet = mmdet_gfl_state()
    summary = import_mmdet(save_mmdet(tmp_path, state), tmp_path / "teacher.pt")
    assert summary["backbone"] == "resnet18" and summary["classes"] == 3 and not summary["reordered"]
    model, cfg, cats = load_model(tmp_path / "teacher.pt")
    assert (cfg.model.fpn_channels, cfg.model.head_channels, cfg.model.num_convs, cfg.model.reg_max) == (64, 64, 2, 16)
    assert cfg.model.strides == [8, 16, 32, 64, 128] and cfg.model.anchor_scale == 8.0
    assert cats.names == list(CLASSES) and cats.ids == [1, 2, 3]
    images = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8)
    with torch.no_grad():
        ours = model(images)
        x = (images.float() - torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)) / torch.tensor(
            [58.395, 57.12, 57.375]).view(1, 3, 1, 1)  # mmdetection's img_norm_cfg, to_rgb
        cls_scores, bbox_preds = mmdet_forward(state, resnet, x)
    for level in range(LEVELS):
        torch.testing.assert_close(ours["cls_logits"][level], cls_scores[level], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours["edge_logits"][level], bbox_preds[level], atol=1e-4, rtol=1e-4)
    assert [t.shape[-1] for t in ours["cls_logits"]] == [16, 8, 4, 2, 1]


def test_ann_takes_category_ids_by_name_and_reorders_the_class_outputs(tmp_path):
    state, _ = mmdet_gfl_state()
    ann = tmp_path / "ann.json"  # ids sorted as bird, cat, dog: ftpdet's labels follow sorted ids
    ann.write_text(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 16, "name": "bird"}, {"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]}))
    summary = import_mmdet(save_mmdet(tmp_path, state), tmp_path / "t.pt", ann=ann)
    assert summary["reordered"]
    model, _, cats = load_model(tmp_path / "t.pt")
    assert cats.ids == [16, 17, 18] and cats.names == ["bird", "cat", "dog"]
    w = model.state_dict()["head.cls_out.weight"]
    assert torch.equal(w[0], state["bbox_head.gfl_cls.weight"][2]) and torch.equal(w[1], state["bbox_head.gfl_cls.weight"][0])


def test_what_cannot_be_imported_is_refused_in_one_line(tmp_path):
    state, _ = mmdet_gfl_state()
    dcn = dict(state, **{"backbone.layer3.0.conv2.conv_offset.weight": torch.zeros(18, 256, 3, 3)})
    with pytest.raises(CheckpointError, match="deformable convolutions"):
        import_mmdet(save_mmdet(tmp_path, dcn, name="dcn.pth"), tmp_path / "t.pt")
    partial = {k: v for k, v in state.items() if not k.startswith("bbox_head.reg_convs.1.")}
    with pytest.raises(CheckpointError, match="tensors of the model are not in the file, e.g. 'head.reg_convs.1"):
        import_mmdet(save_mmdet(tmp_path, partial, name="partial.pth"), tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="meta lists 2 classes, the head predicts 3"):
        import_mmdet(save_mmdet(tmp_path, state, classes=("a", "b"), name="c.pth"), tmp_path / "t.pt")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="not an mmdetection detector"):
        import_mmdet(tmp_path / "r18.pth", tmp_path / "t.pt")


def test_the_cli_imports_and_distils_from_the_imported_teacher(tmp_path, tiny_data):
    ann = tiny_data / "annotations" / "instances_train.json"
    names = [c["name"] for c in sorted(json.loads(ann.read_text())["categories"], key=lambda c: c["id"])]
    state, _ = mmdet_gfl_state(num_classes=len(names))
    ckpt = save_mmdet(tmp_path, state, classes=tuple(names))
    runner = CliRunner()
    res = runner.invoke(app, ["import", "mmdet", str(ckpt), "--ann", str(ann), "--out", str(tmp_path / "teacher.pt")])
    assert res.exit_code == 0, res.output
    assert "resnet18" in res.output and "teacher.pt" in res.output
    args = ["distill", "demo_student", "--teacher", str(tmp_path / "teacher.pt")]
    for s in (f"data.root={tiny_data}", "data.image_size=64", f"train.out_dir={tmp_path / 'run'}", "train.epochs=1",
              "train.batch_size=8", "model.strides=[8,16,32,64,128]", "model.fpn_channels=32", "model.head_channels=32",
              "distill.method=kd"):
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "last.pt").is_file()
