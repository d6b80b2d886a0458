"""Unlabeled images as a second training stream (data.unlabeled): what the teacher's responses, not labels, teach.

A source is a folder of images (searched recursively, every suffix PIL reads) or a COCO JSON whose `images` are
taken and whose annotations are ignored (COCO's unlabeled2017 comes as image_info_unlabeled2017.json + a folder).
Every image's header is read before training starts, so a file that does not decode is one error naming it, not a
crash an hour in. An unlabeled image that is also a labeled training image (the same bytes, wherever it lies) is
reported and left out of the unlabeled stream, so no image is trained twice.

The stream is endless: reshuffled passes over the images, one permutation per pass drawn from (seed, pass). Position
k of the stream is an image and an augmentation, both a pure function of (seed, k): the augmentation runs under its
own generator seeded from (seed, k), so the labeled stream's random numbers are the ones a labels-only run of the
same seed draws, a resumed run continues exactly from the position its checkpoint records, and a DDP rank reads its
own positions without any shared state. Teacher and student see the same augmented view (the step feeds both the
same tensor).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ftpdet.data.coco import Categories, decode_image, image_size, load_records
from ftpdet.data.transforms import Resize, augmentation, augmented, make_sample
from ftpdet.errors import DatasetError

# Suffixes PIL decodes that photographs and video frames come in; anything else in the folder is ignored.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"})
CACHE_BYTES = 4 << 30  # letterboxed images are cached (data.cache_images) only while they fit in 4 GiB


@dataclass(frozen=True)
class UnlabeledRecord:
    path: Path
    width: int
    height: int
    # The image's own labels, only when given (data.unlabeled_labels: the all-labels ceiling): boxes (N, 4) xyxy
    # pixels and labels (N,); None for an unlabeled image.
    boxes: np.ndarray | None = None
    labels: np.ndarray | None = None


def image_paths(source: str | Path, images: str | Path | None = None) -> list[Path]:
    """The images of a source: a folder's image files (recursively, sorted), or the `images` of a COCO JSON, found
    under `images` (default: the folder the JSON is in)."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise DatasetError(f"{source}: no images in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return paths
    if not source.exists():
        raise DatasetError(f"{source}: unlabeled images not found (expected a folder of images or a COCO JSON)")
    if source.suffix.lower() != ".json":
        raise DatasetError(f"{source}: expected a folder of images or a COCO JSON listing them")
    try:
        data = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{source}: expected a JSON object with an 'images' list")
    root = Path(images) if images is not None else source.parent
    if not root.is_dir():
        raise DatasetError(f"{root}: image directory not found (data.unlabeled_images)")
    paths = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "file_name" not in img:
            raise DatasetError(f"{source}: images[{i}] lacks 'file_name'")
        paths.append(root / str(img["file_name"]))
    if not paths:
        raise DatasetError(f"{source}: no images listed")
    return paths


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def labeled_copies(unlabeled: list[Path], labeled: list[Path]) -> dict[Path, Path]:
    """{unlabeled path: the labeled image with the same bytes}. Files are hashed only when their sizes match a
    labeled file's, so a large unlabeled folder costs a stat per file."""
    by_size: dict[int, list[Path]] = {}
    for p in labeled:
        by_size.setdefault(p.stat().st_size, []).append(p)
    digests: dict[str, Path] = {}
    copies = {}
    for p in unlabeled:
        candidates = by_size.get(p.stat().st_size)
        if not candidates:
            continue
        for q in candidates:
            digests.setdefault(_digest(q), q)
        match = digests.get(_digest(p))
        if match is not None:
            copies[p] = match
    return copies


def load_unlabeled(source: str | Path, images: str | Path | None = None, labeled: list[Path] = (),
                   labels: str | Path | None = None,
                   categories: Categories | None = None) -> tuple[list[UnlabeledRecord], dict[Path, Path]]:
    """Records of every decodable unlabeled image that is not a labeled one, and the copies left out
    ({unlabeled path: labeled path}). `labels`: a COCO JSON holding these images' own labels (file names relative
    to the images' folder; `categories`: the training set's), for the all-labels ceiling only."""
    paths = image_paths(source, images)
    copies = labeled_copies(paths, list(labeled))
    known = {}
    if labels is not None:
        folder = Path(images) if images is not None else Path(source) if Path(source).is_dir() else Path(source).parent
        _, _, found = load_records(labels, folder, categories)
        known = {r.path: r for r in found}
    records = []
    for p in paths:
        h, w = image_size(p, Path(source) if Path(source).is_file() else None)  # DatasetError naming a bad file
        if p in copies:
            continue
        if labels is not None:
            if p not in known:
                raise DatasetError(f"{labels}: holds no labels for the unlabeled image {p}")
            records.append(UnlabeledRecord(p, w, h, known[p].boxes, known[p].labels))
        else:
            records.append(UnlabeledRecord(p, w, h))
    if not records:
        raise DatasetError(f"{source}: every unlabeled image is also a labeled training image ({len(copies)} copies)")
    return records, copies


def copies_warning(source: str | Path, copies: dict[Path, Path]) -> str:
    """One line reporting unlabeled images that are labeled ones too."""
    first, match = next(iter(copies.items()))
    return (f"{source}: {len(copies)} unlabeled image(s) are labeled training images too (e.g. {first} = {match}); "
            "they are left out of the unlabeled stream, so no image is trained twice")


def augmentation_seed(seed: int, position: int) -> int:
    """The generator seed of the stream's position `position`: a hash of (seed, position), never 0-correlated
    across neighbouring positions."""
    return int(np.random.SeedSequence([seed, position, 0x756E6C]).generate_state(1, np.uint64)[0] >> 1)


class UnlabeledImages(Dataset):
    """Items: stream positions -> (image (3, S, S) uint8, target dict with no boxes and `labeled` False). The image
    is the one `UnlabeledStream` maps the position to; its augmentation (photometric jitter, flip, and a multiscale
    resize when set) runs under a generator seeded from (seed, position). Records that carry their own labels (the
    all-labels ceiling) give them, letterboxed and augmented with the image, and `labeled` True."""

    def __init__(self, records: list[UnlabeledRecord], resize: Resize, seed: int, cache_images: bool = True,
                 hflip: float = 0.5, photometric: bool = True) -> None:
        self.records, self.resize, self.seed = records, resize, seed
        self.letterbox = resize.transform(train=True)
        self.augment = augmentation(hflip, photometric)
        self._cache: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        fits = len(records) * 3 * resize.size ** 2 <= CACHE_BYTES
        if cache_images and resize.deterministic_in_training and fits:
            self._cache = [self._letterboxed(i) for i in range(len(records))]

    def __len__(self) -> int:
        return len(self.records)

    def _letterboxed(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image (3, S, S) uint8, boxes (N, 4), labels (N,)): no boxes unless the record has labels."""
        rec = self.records[index]
        boxes = torch.from_numpy(rec.boxes) if rec.boxes is not None else torch.zeros(0, 4)
        labels = torch.from_numpy(rec.labels) if rec.labels is not None else torch.zeros(0, dtype=torch.long)
        sample = self.letterbox(make_sample(decode_image(rec.path), boxes, labels))
        return (sample["image"].as_subclass(torch.Tensor), sample["boxes"].as_subclass(torch.Tensor).float(),
                sample["labels"])

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        """item: (image index, stream position)."""
        index, position = item
        rec = self.records[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(augmentation_seed(self.seed, position))
            image, boxes, labels = self._cache[index] if self._cache is not None else self._letterboxed(index)
            if self.augment is not None:
                image, boxes, labels = augmented(self.augment, image, boxes, labels)
        target = {
            "boxes": boxes,
            "labels": labels,
            "image_id": -1 - index,  # never a COCO id: these images are never evaluated
            "scale": self.resize.scale(rec.height, rec.width),
            "orig_size": (rec.height, rec.width),
            "labeled": rec.labels is not None,
        }
        return image, target


class UnlabeledStream:
    """The batch sampler of the unlabeled stream for one rank: from global position `start`, each step takes the
    next `per_rank * world` positions and this rank reads `per_rank` of them. Position k is image
    perm_p[k mod N] of pass p = k // N, perm_p a permutation drawn from (seed, p). Endless: the loop takes one batch
    per labeled batch."""

    def __init__(self, num_images: int, per_rank: int, seed: int, start: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.n, self.per_rank, self.seed, self.start, self.rank, self.world = num_images, per_rank, seed, start, rank, world
        self._perm: tuple[int, torch.Tensor] | None = None

    @property
    def per_step(self) -> int:
        """Positions consumed by one step over all ranks."""
        return self.per_rank * self.world

    def image(self, position: int) -> int:
        p, i = divmod(position, self.n)
        if self._perm is None or self._perm[0] != p:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, p]).generate_state(1)[0]))
            self._perm = (p, torch.randperm(self.n, generator=g))
        return int(self._perm[1][i])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in itertools.count():
            first = self.start + step * self.per_step + self.rank * self.per_rank
            yield [(self.image(k), k) for k in range(first, first + self.per_rank)]

