"""Evaluation: our reported AP is pycocotools' COCOeval on the same detections; results are COCO format."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from ftpdet.cli import app
from ftpdet.sections import EvalConfig
from ftpdet.engine.evaluate import METRIC_KEYS, coco_from_dict, coco_metrics, to_coco_results
from ftpdet.models.detector import postprocess


def direct_cocoeval(ann_file, results_file):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(str(results_file)), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats[:6]


def test_cli_eval_matches_direct_cocoeval(overfit_run, tmp_path):
    result, root = overfit_run
    ann = root / "annotations" / "instances_train.json"
    out = tmp_path / "results.json"
    res = CliRunner().invoke(app, ["eval", str(result.out_dir / "last.pt"), "--ann", str(ann),
                                   "--images", str(root / "train"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "results_metrics.json").read_text())
    assert set(metrics) == set(METRIC_KEYS) and all(0 <= v <= 1 for v in metrics.values())
    assert metrics["AP50"] >= 0.9  # the memorised images: a non-trivial comparison
    stats = direct_cocoeval(ann, out)
    for key, value in zip(METRIC_KEYS, stats):
        assert metrics[key] == pytest.approx(max(value, 0.0), abs=1e-9), key
    dets = json.loads(out.read_text())
    assert dets and set(dets[0]) == {"image_id", "category_id", "bbox", "score"}


def test_perfect_detections_score_one_and_none_score_zero(tiny_data):
    data = json.loads((tiny_data / "annotations" / "instances_val.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in data["annotations"]]
    gt = coco_from_dict(data)
    assert coco_metrics(gt, perfect)["AP"] == pytest.approx(1.0)
    assert coco_metrics(gt, []) == {k: 0.0 for k in METRIC_KEYS}


def test_results_map_back_to_original_pixels_and_category_ids():
    det = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    target = {"image_id": 7, "scale": 0.5, "orig_size": (100, 50)}
    (r,) = to_coco_results([det], [target], category_ids=[4, 9])
    # /0.5 -> [20, 40, 60, 120], clipped to the 50 x 100 (w x h) original.
    assert r == {"image_id": 7, "category_id": 9, "bbox": [20.0, 40.0, 30.0, 60.0], "score": 0.9}


def test_postprocess_threshold_nms_and_cap():
    cfg = EvalConfig(score_thr=0.1, nms_iou=0.5, max_dets=2)
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.05, 0.7], [0.0, 0.3]])  # (N=4, C=2)
    out = postprocess(scores, boxes, cfg, (64, 64))
    # Box 1 overlaps box 0 (IoU .81) in the same class -> suppressed; 0.05 is under the threshold; cap 2.
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert out["labels"].tolist() == [0, 1]


def test_bootstrap_resamples_images_the_same_way_for_every_model(tiny_data):
    # Perfect detections score AP 1 on every resampling (no spread); a set that misses some images spreads; the
    # difference between a set and itself is exactly 0 on every resampling (the pairing is exact).
    from ftpdet.engine.evaluate import bootstrap_ap

    data = json.loads((tiny_data / "annotations" / "instances_val.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in data["annotations"]]
    first = data["images"][0]["id"]
    partial = [d for d in perfect if d["image_id"] != first]
    boot = bootstrap_ap(data, [perfect, partial, partial], replicates=30, seed=1)
    assert boot.shape == (30, 3)
    assert np.allclose(boot[:, 0], 1.0)
    assert boot[:, 1].std() > 0 and boot[:, 1].max() <= 1.0
    assert np.array_equal(boot[:, 1], boot[:, 2])
    full = coco_metrics(coco_from_dict(data), partial)["AP"]
    assert boot[:, 1].min() <= full <= boot[:, 1].max()


def test_cli_eval_noise_reports_each_model_and_the_difference(tiny_data, teacher_ckpt):
    res = CliRunner().invoke(app, ["bench", "eval-noise", str(teacher_ckpt), str(teacher_ckpt), "--data", str(tiny_data),
                                   "--replicates", "5"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if " AP" in ln]  # (progress bars go to the same captured output)
    assert len(lines) == 3 and "evaluation noise (bootstrap std over 5 resamplings of 4 images)" in lines[0]
    assert lines[2] == "difference A - B: +0.00 AP, evaluation noise 0.00"  # a model against itself: exactly 0
    res = CliRunner().invoke(app, ["bench", "eval-noise", "--data", str(tiny_data)])
    assert res.exit_code == 2
