"""The built-in dataset: deterministic for a seed, valid COCO, the promised variety of sizes."""

import hashlib
import json

import numpy as np

from ftpdet.data.coco import CocoDetection
from ftpdet.data.synth import SHAPES, render_image, synthesize


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = synthesize(tmp_path / "a", seed=3, num_train=6, num_val=2, image_size=64)
    b = synthesize(tmp_path / "b", seed=3, num_train=6, num_val=2, image_size=64)
    c = synthesize(tmp_path / "c", seed=4, num_train=6, num_val=2, image_size=64)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_image_does_not_depend_on_split_size(tmp_path):
    # Each image has its own generator: asking for more images does not change the first ones.
    a = synthesize(tmp_path / "a", seed=1, num_train=2, num_val=1, image_size=64)
    b = synthesize(tmp_path / "b", seed=1, num_train=5, num_val=1, image_size=64)
    assert (a / "train" / "000001.png").read_bytes() == (b / "train" / "000001.png").read_bytes()


def test_writes_loadable_coco(tmp_path):
    root = synthesize(tmp_path / "s", seed=0, num_train=10, num_val=3, image_size=64, num_classes=8)
    data = json.loads((root / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(SHAPES[:8])
    assert len(data["images"]) == 10 and len(list((root / "train").glob("*.png"))) == 10
    ds = CocoDetection(root / "annotations" / "instances_val.json", root / "val", 64)
    assert len(ds) == 3 and ds.num_classes == 8


def test_objects_span_tiny_to_most_of_the_image():
    sizes, labels = [], []
    for i in range(60):
        pixels, objects = render_image(np.random.default_rng([0, 0, i]), 128, len(SHAPES))
        assert pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
        for o in objects:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            sizes.append(max(x1 - x0, y1 - y0))
            labels.append(o.label)
    assert min(sizes) <= 10 and max(sizes) >= 90
    assert set(labels) == set(range(len(SHAPES)))  # every class appears
