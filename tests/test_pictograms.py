"""The second built-in dataset: made from files inside matplotlib, deterministic, valid COCO, unlike the shapes."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ftpdet.cli import app
from ftpdet.data.coco import CocoDetection
from ftpdet.data.pictograms import DISTRACTORS, PICTOGRAMS, glyph_mask, render_pictograms, textures
from ftpdet.data.synth import synthesize
from tests.test_synth import digest


def test_every_glyph_and_texture_ships_with_matplotlib_and_they_differ():
    masks = [glyph_mask(c) for c in (*PICTOGRAMS.values(), *DISTRACTORS)]
    for m in masks:
        assert m.ndim == 2 and min(m.shape) >= 40 and 0.1 < m.mean() < 0.9  # a real glyph, not a blank or a box
    # No two glyphs are the same picture: compare them at one size.
    from PIL import Image
    small = [np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize((24, 24)), np.float32) / 255 for m in masks]
    for i in range(len(small)):
        for j in range(i):
            assert np.abs(small[i] - small[j]).mean() > 0.05
    tex = textures()
    assert len(tex) == 4 and all(t.dtype == np.uint8 and t.shape[2] == 3 and min(t.shape[:2]) >= 90 for t in tex)
    assert all(t.std() > 20 for t in tex)  # real texture, not a flat field


def test_same_seed_same_bytes_and_loadable_coco(tmp_path):
    a = synthesize(tmp_path / "a", seed=3, num_train=4, num_val=2, image_size=64, kind="pictograms")
    b = synthesize(tmp_path / "b", seed=3, num_train=4, num_val=2, image_size=64, kind="pictograms")
    shapes = synthesize(tmp_path / "s", seed=3, num_train=4, num_val=2, image_size=64)
    assert digest(a) == digest(b) and digest(a) != digest(shapes)
    data = json.loads((a / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(PICTOGRAMS)
    assert data["info"]["description"] == "ftpdet built-in pictograms"
    ds = CocoDetection(a / "annotations" / "instances_val.json", a / "val", 64)
    assert len(ds) == 2 and ds.num_classes == 10


def test_objects_are_many_mostly_small_and_every_class_appears():
    sizes, labels, counts = [], [], []
    for i in range(40):
        pixels, objects = render_pictograms(np.random.default_rng([0, 0, i]), 128, len(PICTOGRAMS))
        assert pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
        counts.append(len(objects))
        for o in objects:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and o.area > 0
            sizes.append(max(x1 - x0, y1 - y0))
            labels.append(o.label)
    assert set(labels) == set(range(len(PICTOGRAMS)))
    assert max(counts) >= 7 and np.mean(counts) > 3  # busier scenes than the shapes' 1-6
    assert min(sizes) <= 10 and max(sizes) >= 50 and np.median(sizes) < 32  # most objects under a quarter of the side


def test_cli_writes_pictograms_and_rejects_an_unknown_kind(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "p"), "--num-train", "2", "--num-val", "1",
                              "--image-size", "64", "--kind", "pictograms"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "p" / "train").glob("*.png"))) == 2
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "q"), "--kind", "digits"])
    assert res.exit_code == 2 and "unknown dataset kind 'digits'" in res.output


@pytest.mark.parametrize("args", [["--dataset", "photos"], ["--dataset", "pictograms", "--data", "somewhere"]])
def test_bench_rejects_an_unknown_dataset_or_two_datasets(tmp_path, args):
    res = CliRunner().invoke(app, ["bench", "accuracy", "--preset", "smoke", "--out", str(tmp_path / "b"), *args])
    assert res.exit_code == 2 and "--dataset" in res.output, res.output
