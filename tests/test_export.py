"""ONNX export: the deployed artefact matches PyTorch (raw outputs and AP), and eval/predict run it."""

import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from ftpdet.api import evaluate_checkpoint
from ftpdet.cli import app
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.checkpoint import load_model
from ftpdet.onnx_export import InferenceGraph, export_onnx
from ftpdet.runtime import OnnxPredictor, load_predictor

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(overfit_run, tmp_path_factory):
    """The memorising detector of conftest (AP50 >= 0.9 on its images), exported with a dynamic batch."""
    result, root = overfit_run
    path = export_onnx(result.out_dir / "last.pt", tmp_path_factory.mktemp("onnx") / "model.onnx", dynamic_batch=True)
    return result.out_dir / "last.pt", path, root


def test_raw_outputs_match_pytorch_within_1e_4(exported):
    ckpt, path, root = exported
    model, cfg, _ = load_model(ckpt)
    ds = CocoDetection(root / "annotations" / "instances_train.json", root / "train", cfg.data.image_size)
    images, _ = collate([ds[i] for i in range(5)])  # a batch size the example input did not have
    with torch.no_grad():
        expected = InferenceGraph(model)(images)
    got = OnnxPredictor(path).run(images)
    for name, ref in zip(("cls_logits", "edge_logits", "scores", "boxes"), expected):
        assert got[name].shape == tuple(ref.shape), name
        tol = 1e-4 if name != "boxes" else 1e-4 * cfg.data.image_size  # boxes are in pixels, logits in units
        assert np.abs(got[name] - ref.numpy()).max() <= tol, (name, np.abs(got[name] - ref.numpy()).max())


def test_onnx_ap_equals_pytorch_ap_to_3_decimals(exported):
    ckpt, path, root = exported
    ann, images = root / "annotations" / "instances_train.json", root / "train"
    torch_metrics, torch_dets = evaluate_checkpoint(ckpt, ann, images)
    onnx_metrics, onnx_dets = evaluate_checkpoint(path, ann, images)
    assert torch_metrics["AP50"] >= 0.9  # a detector that really detects: parity on real detections
    assert len(onnx_dets) == len(torch_dets)
    for k in torch_metrics:
        assert round(onnx_metrics[k], 3) == round(torch_metrics[k], 3), k


def test_metadata_carries_classes_size_and_preprocessing(exported):
    ckpt, path, _ = exported
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    stored = load_model(ckpt)[2]
    assert json.loads(meta["class_names"]) == stored.names
    assert json.loads(meta["categories"])["ids"] == stored.ids
    assert meta["image_size"] == "96" and "letterbox" in meta["preprocessing"]
    from ftpdet.provenance import machine_description

    assert meta["exported_on"] == machine_description() and ("bf16" in meta["exported_on"])  # names the ISA too
    det, cfg, cats = load_predictor(path)
    assert cats.names == stored.names and cfg.data.image_size == 96


def test_nms_in_the_graph_gives_the_same_ap(exported, tmp_path):
    ckpt, _, root = exported
    path = export_onnx(ckpt, tmp_path / "nms.onnx", nms=True)  # fixed batch 1: run image by image
    assert "selected" in [o.name for o in onnx.load(str(path)).graph.output]
    ann, images = root / "annotations" / "instances_train.json", root / "train"
    ref, _ = evaluate_checkpoint(ckpt, ann, images)
    got, dets = evaluate_checkpoint(path, ann, images)
    assert dets and round(got["AP"], 3) == round(ref["AP"], 3)


def test_cli_export_then_predict_with_the_onnx_file(exported, tmp_path):
    ckpt, _, root = exported
    out = tmp_path / "cli.onnx"
    res = runner.invoke(app, ["export", str(ckpt), "--out", str(out), "--image-size", "128"])
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["image_size"] == "128"
    image = sorted((root / "train").glob("*.png"))[0]
    res = runner.invoke(app, ["predict", str(out), str(image), "--out", str(tmp_path / "vis")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "vis" / f"{image.stem}_pred.png").stat().st_size > 1000


def test_a_checkpoint_and_an_onnx_file_are_both_predictors(exported):
    """eval and predict take either through one protocol: device + predict(images, eval config)."""
    from ftpdet.predictor import Predictor

    ckpt, path, root = exported
    model, cfg, _ = load_predictor(ckpt)
    onnx_model, _, _ = load_predictor(path)
    assert isinstance(model, Predictor) and isinstance(onnx_model, Predictor)
    assert not isinstance(onnx_model, torch.nn.Module)  # a session, not a module pretending to be one
    ds = CocoDetection(root / "annotations" / "instances_train.json", root / "train", cfg.data.image_size)
    images, _ = collate([ds[i] for i in range(2)])
    a, b = model.predict(images, cfg.eval), onnx_model.predict(images, cfg.eval)
    assert len(a[0]["boxes"]) > 0 and len(a[0]["boxes"]) == len(b[0]["boxes"])
    assert torch.allclose(a[0]["boxes"], b[0]["boxes"], atol=1e-2)
    model.train()
    assert model.predict(images, cfg.eval)[0]["boxes"].shape == a[0]["boxes"].shape and model.training  # mode kept
