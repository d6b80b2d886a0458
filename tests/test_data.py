"""COCO loading: each bad input gives its one-line message; repairs are counted; transforms move boxes."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ftpdet.data.coco import CocoDetection, collate
from ftpdet.data.transforms import build_transforms, make_sample
from ftpdet.errors import DatasetError


def write_dataset(tmp_path, annotations=None, images=None, categories=None, sizes=((40, 30),)):
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), 100 + i, np.uint8)).save(img_dir / f"{i}.png")
    data = {
        "images": images if images is not None else [
            {"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h} for i, (w, h) in enumerate(sizes)
        ],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 8], "area": 80, "iscrowd": 0}
        ],
        "categories": categories if categories is not None else [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    return ann, img_dir


def load(ann, img_dir, **kw):
    return CocoDetection(ann, img_dir, image_size=40, **kw)


def test_valid_dataset_maps_categories_to_contiguous_labels(tmp_path):
    ann, img_dir = write_dataset(tmp_path, sizes=((40, 30), (20, 20)))
    ds = load(ann, img_dir)
    assert ds.categories.ids == [3, 7] and ds.categories.names == ["cat", "dog"]
    image, target = ds[0]
    assert image.shape == (3, 40, 40) and image.dtype == torch.uint8
    assert target["labels"].tolist() == [0]
    assert target["boxes"].tolist() == [[5.0, 5.0, 15.0, 13.0]]  # 40 px wide: scale 1, padding below
    # The second image has no annotation: kept as a negative, not dropped.
    assert len(ds) == 2
    assert ds[1][1]["boxes"].shape == (0, 4)
    images, targets = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 40, 40) and len(targets) == 2


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda ann, d: ann.unlink(), "annotation file not found"),
        (lambda ann, d: ann.write_text(ann.read_text()[:25]), "not valid JSON"),
        (lambda ann, d: ann.write_text("[1, 2]"), "expected a JSON object"),
        (lambda ann, d: ann.write_text(json.dumps({"images": [], "categories": []})), "missing key 'annotations'"),
        (lambda ann, d: ann.write_text(json.dumps({"images": {}, "annotations": [], "categories": []})), "'images' must be a list"),
        (lambda ann, d: (d / "0.png").unlink(), "image file not found"),
        (lambda ann, d: (d / "0.png").write_text("not an image"), "cannot decode image"),
        (lambda ann, d: (d / "0.png").write_bytes(b""), "cannot decode image"),
    ],
)
def test_bad_inputs_name_the_file_and_problem(tmp_path, mutate, message):
    ann, img_dir = write_dataset(tmp_path)
    mutate(ann, img_dir)
    with pytest.raises(DatasetError, match=message) as exc:
        load(ann, img_dir)
    assert "\n" not in str(exc.value)
    assert str(tmp_path) in str(exc.value)


def test_missing_image_dir(tmp_path):
    ann, _ = write_dataset(tmp_path)
    with pytest.raises(DatasetError, match="image directory not found"):
        load(ann, tmp_path / "nope")


def test_missing_keys_in_records(tmp_path):
    ann, img_dir = write_dataset(tmp_path, annotations=[{"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(DatasetError, match=r"annotations\[0\] lacks 'category_id'"):
        load(ann, img_dir)


def test_unknown_category(tmp_path):
    ann, img_dir = write_dataset(
        tmp_path, annotations=[{"id": 1, "image_id": 1, "category_id": 99, "bbox": [0, 0, 4, 4]}]
    )
    with pytest.raises(DatasetError, match="annotations\\[0\\] has category_id 99"):
        load(ann, img_dir)


def test_empty_dataset(tmp_path):
    ann, img_dir = write_dataset(tmp_path, images=[], annotations=[])
    with pytest.raises(DatasetError, match="empty dataset"):
        load(ann, img_dir)


def test_degenerate_boxes_dropped_and_outside_boxes_clipped_with_a_warning(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 8]},  # zero width: dropped
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10, -1]},  # negative height: dropped
        {"id": 3, "image_id": 1, "category_id": 7, "bbox": [30, 20, 20, 20]},  # past the 40x30 image: clipped
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [2, 2, 4, 4]},  # fine
    ]
    ann, img_dir = write_dataset(tmp_path, annotations=anns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(ann, img_dir)
    msg = " ".join(str(w.message) for w in caught)
    assert "dropped 2 boxes" in msg and "clipped 1 boxes" in msg and str(ann) in msg
    rec = ds.records[0]
    assert rec.boxes.tolist() == [[30.0, 20.0, 40.0, 30.0], [2.0, 2.0, 6.0, 6.0]]
    assert rec.labels.tolist() == [1, 0]


def test_validation_set_uses_training_label_mapping(tmp_path):
    ann, img_dir = write_dataset(tmp_path)
    train = load(ann, img_dir)
    (tmp_path / "val").mkdir()
    val_ann, val_dir = write_dataset(
        tmp_path / "val",
        annotations=[{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 4, 4]}],
        categories=[{"id": 5, "name": "bird"}],
    )
    with pytest.raises(DatasetError, match="category_id 5, not in the training categories"):
        CocoDetection(val_ann, val_dir, 40, categories=train.categories)


def test_letterbox_scales_boxes_and_pads_bottom_right():
    image = torch.zeros(3, 50, 100, dtype=torch.uint8)  # H 50, W 100 -> scale 0.5 into 50 x 50
    sample = build_transforms(50, train=False)(
        make_sample(image, torch.tensor([[10.0, 20.0, 30.0, 40.0]]), torch.tensor([4]))
    )
    assert sample["image"].shape == (3, 50, 50)
    assert sample["boxes"].tolist() == [[5.0, 10.0, 15.0, 20.0]]
    assert sample["labels"].tolist() == [4]
    assert sample["image"][:, 25:, :].float().mean().item() == 114  # padding below the 25 px of content


def test_horizontal_flip_mirrors_boxes():
    torch.manual_seed(0)
    t = build_transforms(40, train=True, hflip=1.0, photometric=False)
    sample = t(make_sample(torch.zeros(3, 40, 40, dtype=torch.uint8), torch.tensor([[0.0, 5.0, 10.0, 15.0]]), torch.tensor([1])))
    assert sample["boxes"].tolist() == [[30.0, 5.0, 40.0, 15.0]]


def test_sub_pixel_boxes_are_sanitized_after_resize():
    image = torch.zeros(3, 400, 400, dtype=torch.uint8)  # scale 0.1: a 5 px box becomes 0.5 px
    sample = build_transforms(40, train=False)(
        make_sample(image, torch.tensor([[0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 100.0, 100.0]]), torch.tensor([0, 1]))
    )
    assert sample["labels"].tolist() == [1]


def test_a_cached_dataset_gives_the_samples_an_uncached_one_gives(tmp_path):
    # The cache holds letterboxed images and boxes; the augmentation runs after it, so under the same seed both
    # paths give identical samples, including images that need a resize and padding.
    from ftpdet.data.synth import synthesize

    root = synthesize(tmp_path / "d", seed=1, num_train=6, num_val=1, image_size=64, num_classes=3)
    ann, images = root / "annotations" / "instances_train.json", root / "train"
    samples = []
    for cache in (False, True):
        ds = CocoDetection(ann, images, 48, train=True, cache_images=cache)
        torch.manual_seed(0)
        samples.append([ds[i] for _ in range(2) for i in range(len(ds))])  # two epochs: the cache stays untouched
    assert all(b[1]["boxes"].numel() for b in samples[0])  # boxes to compare
    for (im_a, t_a), (im_b, t_b) in zip(*samples):
        assert im_a.shape == (3, 48, 48) and torch.equal(im_a, im_b)
        assert torch.equal(t_a["boxes"], t_b["boxes"]) and torch.equal(t_a["labels"], t_b["labels"])
        assert t_a["scale"] == t_b["scale"] == 48 / 64


def test_keep_ratio_resize_is_mmdetections_and_pads_to_32():
    from ftpdet.data.transforms import Resize

    resize = Resize(64, mode="keep_ratio", max_size=96)
    image = torch.zeros(3, 50, 100, dtype=torch.uint8)  # h 50, w 100
    boxes = torch.tensor([[10.0, 5.0, 60.0, 45.0]])
    out = resize.transform(train=False)(make_sample(image, boxes, torch.tensor([1])))
    # scale min(64 / 50, 96 / 100) = 0.96: 48 x 96, padded to 64 x 96 (multiples of 32)
    assert resize.scale(50, 100) == pytest.approx(0.96)
    assert tuple(out["image"].shape[-2:]) == (64, 96)
    assert out["image"][:, 48:, :].eq(114).all()  # the padding, below the image
    assert torch.allclose(out["boxes"].as_subclass(torch.Tensor), boxes * 0.96)
    # the shorter side wins when the longer stays under max_size: 30 x 40 -> 64 / 30
    assert Resize(64, mode="keep_ratio", max_size=1333).scale(30, 40) == pytest.approx(64 / 30)


def test_multiscale_draws_the_shorter_side_in_its_range_and_collate_pads_the_batch():
    from ftpdet.data.transforms import Resize

    resize = Resize(64, mode="keep_ratio", max_size=1000, multiscale=(32, 96))
    train = resize.transform(train=True)
    torch.manual_seed(0)
    sides = set()
    for _ in range(20):
        full = torch.tensor([[0.0, 0.0, 40.0, 40.0]])  # a box over the whole image: its side is the drawn one
        out = train(make_sample(torch.zeros(3, 40, 40, dtype=torch.uint8), full, torch.tensor([0])))
        h, w = out["image"].shape[-2:]
        side = out["boxes"].as_subclass(torch.Tensor)[0, 2].item()
        assert h == w and h % 32 == 0 and 32 <= side <= 96 and h - 32 < side <= h
        sides.add(side)
    assert len(sides) > 10  # drawn over the range, not a few fixed sizes
    assert not resize.deterministic_in_training and Resize(64).deterministic_in_training
    a = (torch.full((3, 32, 64), 7, dtype=torch.uint8), {"image_id": 1})
    b = (torch.full((3, 64, 32), 9, dtype=torch.uint8), {"image_id": 2})
    images, targets = collate([a, b])
    assert images.shape == (2, 3, 64, 64) and [t["image_id"] for t in targets] == [1, 2]
    assert images[0, :, :32, :].eq(7).all() and images[0, :, 32:, :].eq(114).all()  # padded below
    assert images[1, :, :, :32].eq(9).all() and images[1, :, :, 32:].eq(114).all()  # padded on the right


def test_a_keep_ratio_dataset_maps_boxes_back_by_its_scale(tmp_path):
    from ftpdet.data.transforms import Resize

    ann, img_dir = write_dataset(tmp_path, sizes=((100, 50),),
                                 annotations=[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 5, 50, 40]}])
    ds = CocoDetection(ann, img_dir, Resize(64, mode="keep_ratio", max_size=96), train=False)
    image, target = ds[0]
    assert tuple(image.shape[-2:]) == (64, 96)
    original = target["boxes"] / target["scale"]  # what evaluation does to a detection
    assert torch.allclose(original, torch.tensor([[10.0, 5.0, 60.0, 45.0]]), atol=0.5)
