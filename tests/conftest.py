"""Shared fixtures: tiny built-in datasets and configs small enough for CPU tests."""

import os
import tempfile

import pytest
import torch

from ftpdet.config import load_config
from ftpdet.data.synth import synthesize

# `make test` runs the suite in parallel (pytest-xdist, one worker per core): each worker and the processes it starts
# get their share of the cores, since torch processes that each spin a thread per core slow each other many times
# over on a small machine.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ["OMP_NUM_THREADS"] = str(_threads)

# `train.amp: auto` times the precision candidates once per machine and model and remembers the answer: the suite
# keeps its own cache (shared by a worker and the processes it starts), never the user's ~/.cache/ftpdet.
if "FTPDET_CACHE_DIR" not in os.environ:
    os.environ["FTPDET_CACHE_DIR"] = tempfile.mkdtemp(prefix="ftpdet-test-cache-")

# The longest files first, so that in parallel one worker runs the docs while the others share the rest (xdist hands
# out whole files in collection order under `--dist loadfile --no-loadscope-reorder`).
LONGEST_FIRST = ("test_docs.py", "test_bench.py", "test_distributed.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


TINY_MODEL = [
    "model.backbone=mobilenet_v3_small",
    "model.width_mult=0.5",
    "model.fpn_channels=32",
    "model.head_channels=32",
    "model.num_convs=1",
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """16 train / 4 val images of 64 px, 4 classes; 16 unlabeled ones in unlabeled/."""
    return synthesize(tmp_path_factory.mktemp("tiny"), seed=0, num_train=16, num_val=4, image_size=64, num_classes=4,
                      num_unlabeled=16)


def tiny_config(root, out_dir, *extra):
    return load_config(
        None,
        [f"data.root={root}", "data.image_size=64", f"train.out_dir={out_dir}", "train.batch_size=8",
         "train.warmup_steps=2", "train.log_every=1", *TINY_MODEL, *extra],
    )


@pytest.fixture(scope="session")
def teacher_ckpt(tiny_data, tmp_path_factory):
    """A (weak) teacher on tiny_data: wider and deeper than the tiny student, same classes and strides."""
    from ftpdet.engine.train import train

    teacher = ["model.width_mult=1.0", "model.fpn_channels=48", "model.head_channels=48", "model.num_convs=2"]
    cfg = tiny_config(tiny_data, tmp_path_factory.mktemp("teacher") / "run", "train.epochs=2", *teacher)
    return train(cfg, progress=False).out_dir / "last.pt"


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory):
    """A detector trained to memorise 8 images (no augmentation), evaluated on those same images."""
    from ftpdet.engine.train import train

    tmp = tmp_path_factory.mktemp("overfit")
    root = synthesize(tmp / "data", seed=5, num_train=8, num_val=1, image_size=96, num_classes=3, min_object_size=16)
    cfg = tiny_config(
        root, tmp / "run",
        "data.image_size=96", f"data.val_ann={root}/annotations/instances_train.json", f"data.val_images={root}/train",
        "data.hflip=0", "data.photometric=false", "train.epochs=150", "train.eval_every=150",
        "train.lr=0.003", "train.warmup_steps=20", "train.log_every=50", "train.weight_decay=0",
        "model.fpn_channels=48", "model.head_channels=48", "model.num_convs=2", "model.width_mult=1.0",
    )
    result = train(cfg, progress=False)
    return result, root
