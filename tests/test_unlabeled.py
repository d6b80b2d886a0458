"""Unlabeled images as a data source: the folder and JSON readers, labeled copies left out, the endless stream
(deterministic, rank-disjoint, augmentation a function of the position), and distillation runs that use them and
resume exactly."""

import json
import shutil
import warnings

import pytest
import torch

from ftpdet.checkpoint import load_checkpoint
from ftpdet.data.coco import collate, join_batches
from ftpdet.data.synth import synthesize
from ftpdet.data.transforms import Resize
from ftpdet.data.unlabeled import UnlabeledImages, UnlabeledStream, image_paths, load_unlabeled
from ftpdet.engine.train import train
from ftpdet.errors import DatasetError
from tests.conftest import tiny_config


def test_synth_writes_images_only_from_their_own_stream(tiny_data, tmp_path):
    names = sorted(p.name for p in (tiny_data / "unlabeled").iterdir())
    assert names == [f"{i:06d}.png" for i in range(16)]
    train_bytes = {p.read_bytes() for p in (tiny_data / "train").iterdir()}
    assert not train_bytes & {p.read_bytes() for p in (tiny_data / "unlabeled").iterdir()}
    # Their labels exist for the all-labels ceiling only, in a file no run reads unless named.
    labels = json.loads((tiny_data / "annotations" / "instances_unlabeled.json").read_text())
    assert len(labels["images"]) == 16 and labels["annotations"]
    # Asking for unlabeled images changes no labeled or validation byte.
    plain = synthesize(tmp_path / "plain", seed=0, num_train=16, num_val=4, image_size=64, num_classes=4)
    for split in ("train", "val"):
        for p in (plain / split).iterdir():
            assert p.read_bytes() == (tiny_data / split / p.name).read_bytes()
    assert not (plain / "unlabeled").exists()


def test_a_folder_is_read_recursively_and_a_json_by_its_images(tiny_data, tmp_path):
    folder = tmp_path / "frames"
    (folder / "cam2").mkdir(parents=True)
    shutil.copy(tiny_data / "unlabeled" / "000000.png", folder / "a.png")
    shutil.copy(tiny_data / "unlabeled" / "000001.png", folder / "cam2" / "b.PNG")
    (folder / "readme.txt").write_text("not an image")
    assert image_paths(folder) == [folder / "a.png", folder / "cam2" / "b.PNG"]
    listing = tmp_path / "image_info.json"
    listing.write_text(json.dumps({"images": [{"id": 7, "file_name": "000005.png"}], "annotations": []}))
    assert image_paths(listing, tiny_data / "unlabeled") == [tiny_data / "unlabeled" / "000005.png"]
    assert image_paths(listing) == [tmp_path / "000005.png"]  # by default, beside the JSON
    with pytest.raises(DatasetError, match="nope: image directory not found"):
        image_paths(listing, tmp_path / "nope")
    listing.write_text(json.dumps({"images": [{"id": 7}]}))
    with pytest.raises(DatasetError, match="images\\[0\\] lacks 'file_name'"):
        image_paths(listing, tiny_data / "unlabeled")


def test_labeled_images_among_the_unlabeled_are_reported_and_left_out(tiny_data, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_data / "unlabeled", folder)
    shutil.copy(tiny_data / "train" / "000004.png", folder / "copy_of_a_labeled_one.png")
    labeled = sorted((tiny_data / "train").iterdir())
    records, copies = load_unlabeled(folder, labeled=labeled)
    assert copies == {folder / "copy_of_a_labeled_one.png": tiny_data / "train" / "000004.png"}
    assert len(records) == 16 and all(r.path.name != "copy_of_a_labeled_one.png" for r in records)


def test_the_stream_is_reshuffled_passes_and_ranks_share_it_without_overlap():
    one = UnlabeledStream(10, per_rank=4, seed=3)
    steps = [b for _, b in zip(range(5), one)]  # 20 positions: two passes
    images = [i for b in steps for i, _ in b]
    assert [k for b in steps for _, k in b] == list(range(20))
    assert sorted(images[:10]) == sorted(images[10:]) == list(range(10))
    assert images[:10] != images[10:]  # each pass its own order
    again = [b for _, b in zip(range(5), UnlabeledStream(10, 4, seed=3))]
    assert again == steps
    assert [b for _, b in zip(range(5), UnlabeledStream(10, 4, seed=4))] != steps
    # Two ranks with half the batch each read the single process's positions, split between them.
    r0 = [b for _, b in zip(range(5), UnlabeledStream(10, 2, seed=3, rank=0, world=2))]
    r1 = [b for _, b in zip(range(5), UnlabeledStream(10, 2, seed=3, rank=1, world=2))]
    assert [a + b for a, b in zip(r0, r1)] == steps
    # Resuming from a position continues the sequence.
    later = UnlabeledStream(10, 4, seed=3, start=8)
    assert next(iter(later)) == steps[2]


def test_an_augmented_view_is_a_function_of_its_position_only(tiny_data):
    records, _ = load_unlabeled(tiny_data / "unlabeled")
    ds = UnlabeledImages(records, Resize(64), seed=0)
    torch.manual_seed(0)
    a, target = ds[(3, 17)]
    state = torch.get_rng_state()
    torch.manual_seed(123)  # another global state: the same view
    b, _ = ds[(3, 17)]
    c, _ = ds[(3, 18)]
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    ds[(3, 17)]
    assert torch.equal(torch.get_rng_state(), state)  # and it draws nothing from the global generator
    assert target["labeled"] is False and target["boxes"].shape == (0, 4) and a.shape == (3, 64, 64)


def test_joined_batches_pad_to_the_largest_and_keep_the_order():
    a = collate([(torch.zeros(3, 64, 96, dtype=torch.uint8), {"i": 0})])
    b = collate([(torch.ones(3, 96, 64, dtype=torch.uint8), {"i": 1}), (torch.ones(3, 96, 64, dtype=torch.uint8), {"i": 2})])
    images, targets = join_batches(a, b)
    assert images.shape == (3, 3, 96, 96) and [t["i"] for t in targets] == [0, 1, 2]
    assert images[0, :, 64:].eq(114).all() and images[1, :, :, 64:].eq(114).all()


def unlabeled_config(tiny_data, out, *extra):
    return tiny_config(tiny_data, out, f"data.unlabeled={tiny_data / 'unlabeled'}", "distill.unlabeled_score_thr=0.05",
                       *extra)


def test_a_distillation_with_unlabeled_images_logs_both_streams(tiny_data, teacher_ckpt, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no copies to report here
        res = train(unlabeled_config(tiny_data, tmp_path / "run", "train.epochs=2", "data.unlabeled_ratio=0.5"),
                    teacher=teacher_ckpt, method="ftpd", progress=False)
    lines = [json.loads(ln) for ln in (res.out_dir / "metrics.jsonl").read_text().splitlines() if "eval" not in ln]
    # 16 labeled images, 8 a step, 4 unlabeled beside them: 4 steps, 16 unlabeled images seen.
    assert [r["unlabeled_seen"] for r in lines] == [4, 8, 12, 16]
    assert all(r["teacher_boxes_per_unlabeled"] >= 0 for r in lines)
    assert load_checkpoint(res.out_dir / "last.pt")["unlabeled_position"] == 16


def test_a_resumed_distillation_with_unlabeled_images_gives_the_uninterrupted_weights(tiny_data, teacher_ckpt,
                                                                                      tmp_path):
    overrides = ("train.epochs=3", "train.ema=0.999", "data.unlabeled_ratio=0.75")  # 6 a step: passes do not align
    full = train(unlabeled_config(tiny_data, tmp_path / "full", *overrides), teacher=teacher_ckpt, method="ftpd",
                 progress=False)
    cfg = unlabeled_config(tiny_data, tmp_path / "sliced", *overrides)
    train(cfg, teacher=teacher_ckpt, method="ftpd", stop_after=1, progress=False)
    resumed = train(cfg, resume=True, progress=False)
    a, b = load_checkpoint(full.out_dir / "last.pt"), load_checkpoint(resumed.out_dir / "last.pt")
    assert a["step"] == b["step"] == 6 and a["unlabeled_position"] == b["unlabeled_position"] == 36
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)


def test_the_labeled_stream_is_the_labels_only_runs(tiny_data, teacher_ckpt, tmp_path, monkeypatch):
    """Unlabeled images change what a step adds, never which labeled images (and augmentations) it sees: a paired
    comparison with a labels-only run of the same seed compares the same labeled batches."""
    from ftpdet.engine import step as step_module

    seen: dict[str, list] = {"plain": [], "unlabeled": []}
    key = ["plain"]
    original = step_module.TrainStep.__call__

    def spy(self, images, targets):
        labeled = [i for i, t in enumerate(targets) if t.get("labeled", True)]
        seen[key[0]].append(images[labeled].clone())
        return original(self, images, targets)

    monkeypatch.setattr(step_module.TrainStep, "__call__", spy)
    train(tiny_config(tiny_data, tmp_path / "plain", "train.epochs=1"), teacher=teacher_ckpt, method="kd",
          progress=False)
    key[0] = "unlabeled"
    train(unlabeled_config(tiny_data, tmp_path / "u", "train.epochs=1"), teacher=teacher_ckpt, method="kd",
          progress=False)
    assert len(seen["plain"]) == len(seen["unlabeled"]) == 2
    for a, b in zip(seen["plain"], seen["unlabeled"]):
        assert torch.equal(a, b)
