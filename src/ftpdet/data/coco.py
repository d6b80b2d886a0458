"""Any COCO detection dataset (an images folder + an instances JSON), validated at load time.

Problems a user can fix raise DatasetError with one line naming the file and the problem. Problems
we can repair without guessing are repaired and counted in one warning: boxes with non-positive
width or height are dropped, boxes reaching outside the image are clipped. Images without
annotations are kept as negatives (they teach the detector what background looks like).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ftpdet.data.transforms import Resize, augmentation, augmented, make_sample
from ftpdet.errors import DatasetError


@dataclass
class Categories:
    """COCO category ids <-> contiguous labels 0..C-1 (sorted by id). Stored in every checkpoint."""

    ids: list[int]
    names: list[str]

    @property
    def id_to_label(self) -> dict[int, int]:
        return {cid: i for i, cid in enumerate(self.ids)}

    def to_dict(self) -> dict[str, list]:
        return {"ids": list(self.ids), "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> Categories:
        return cls(ids=[int(i) for i in d["ids"]], names=[str(n) for n in d["names"]])


@dataclass
class ImageRecord:
    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (N, 4) xyxy pixels
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # (N,)


def read_coco_json(ann_file: str | Path) -> dict[str, Any]:
    """Load and shape-check an instances JSON; every failure names the file."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file}: annotation file not found")
    try:
        data = json.loads(ann_file.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{ann_file}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{ann_file}: cannot read ({e})") from None
    return check_coco(ann_file, data)


def check_coco(ann_file: Path | str, data: Any) -> dict[str, Any]:
    """Shape-check an instances dict; `ann_file` names where it came from in every error."""
    if not isinstance(data, dict):
        raise DatasetError(f"{ann_file}: expected a JSON object with images/annotations/categories, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{ann_file}: missing key '{key}'")
        if not isinstance(data[key], list):
            raise DatasetError(f"{ann_file}: '{key}' must be a list, got {type(data[key]).__name__}")
    _require(ann_file, data["images"], "images", ("id", "file_name"))
    _require(ann_file, data["annotations"], "annotations", ("id", "image_id", "category_id", "bbox"))
    _require(ann_file, data["categories"], "categories", ("id", "name"))
    _check_references(ann_file, data)
    return data


def _require(ann_file: Path | str, items: list, section: str, keys: tuple[str, ...]) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DatasetError(f"{ann_file}: {section}[{i}] must be an object, got {type(item).__name__}")
        for key in keys:
            if key not in item:
                raise DatasetError(f"{ann_file}: {section}[{i}] lacks '{key}'")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _unique_ids(ann_file: Path | str, items: list, section: str) -> set[int]:
    """The section's ids, each an integer seen once. COCOeval indexes images, annotations and categories by id: a
    repeated id silently merges two entries there (one annotation evaluated twice, another never)."""
    first: dict[int, int] = {}
    for i, item in enumerate(items):
        if not _is_int(item["id"]):
            raise DatasetError(f"{ann_file}: {section}[{i}] id must be an integer, got {item['id']!r}")
        if item["id"] in first:
            raise DatasetError(f"{ann_file}: {section}[{i}] repeats id {item['id']} of {section}[{first[item['id']]}]")
        first[item["id"]] = i
    return set(first)


def _check_references(ann_file: Path | str, data: dict[str, Any]) -> None:
    """Every id unique, every annotation pointing at a listed image and category, every bbox 4 finite numbers:
    a file that breaks one of these loads in pycocotools without a word and then trains or scores something else
    than it says."""
    image_ids = _unique_ids(ann_file, data["images"], "images")
    category_ids = _unique_ids(ann_file, data["categories"], "categories")
    _unique_ids(ann_file, data["annotations"], "annotations")
    for i, ann in enumerate(data["annotations"]):
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                  for v in bbox)):
            raise DatasetError(f"{ann_file}: annotations[{i}] bbox must be [x, y, width, height], got {bbox!r}")
        if not all(math.isfinite(v) for v in bbox):
            raise DatasetError(f"{ann_file}: annotations[{i}] bbox has a non-finite value: {bbox!r}")
        area = ann.get("area", 0.0)  # COCOeval's small/medium/large split reads it
        if not (isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area) and area >= 0):
            raise DatasetError(f"{ann_file}: annotations[{i}] area must be a finite number >= 0, got {area!r}")
        if ann["image_id"] not in image_ids:
            raise DatasetError(f"{ann_file}: annotations[{i}] refers to image_id {ann['image_id']!r}, not in images")
        if ann["category_id"] not in category_ids:
            raise DatasetError(f"{ann_file}: annotations[{i}] has category_id {ann['category_id']!r}, not in categories")


def categories_of(data: dict[str, Any]) -> Categories:
    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    return Categories(ids=[int(c["id"]) for c in cats], names=[str(c["name"]) for c in cats])


def image_size(path: Path, listed_in: Path | None = None) -> tuple[int, int]:
    """(height, width) from the header only: fast, and catches missing, empty and non-image files before training
    starts. `listed_in`: the annotation file that names the image, for the error."""
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found" + (f" (listed in {listed_in})" if listed_in else ""))
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    return h, w


def decode_image(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def load_records(
    ann_file: str | Path, image_dir: str | Path, categories: Categories | None = None, coco: dict | None = None
) -> tuple[dict[str, Any], Categories, list[ImageRecord]]:
    """Parse + validate. `categories` fixes the label mapping (validation sets use the training one). `coco`: an
    instances dict already in memory (a YOLO or VOC dataset read in place), `ann_file` then names its source."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data = read_coco_json(ann_file) if coco is None else check_coco(ann_file, coco)
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: image directory not found")
    if not data["images"]:
        raise DatasetError(f"{ann_file}: empty dataset (no images)")
    own = categories_of(data)
    if not own.ids:
        raise DatasetError(f"{ann_file}: no categories")
    cats = categories or own
    id_to_label = cats.id_to_label

    records: dict[int, ImageRecord] = {}
    for img in data["images"]:
        path = image_dir / str(img["file_name"])
        h, w = image_size(path, ann_file)
        records[int(img["id"])] = ImageRecord(int(img["id"]), path, w, h)

    per_image: dict[int, tuple[list, list]] = {k: ([], []) for k in records}
    dropped = clipped = crowd = 0
    for i, ann in enumerate(data["annotations"]):
        cid = int(ann["category_id"])
        if cid not in id_to_label:  # the file's own categories are checked on reading; these are the training ones
            raise DatasetError(f"{ann_file}: annotations[{i}] has category_id {cid}, not in the training categories")
        iid = int(ann["image_id"])
        bbox = ann["bbox"]
        if ann.get("iscrowd", 0):
            crowd += 1  # COCOeval ignores crowd regions; training does not try to detect them
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        if bw <= 0 or bh <= 0:
            dropped += 1
            continue
        rec = records[iid]
        x0, y0 = min(max(x, 0.0), rec.width), min(max(y, 0.0), rec.height)
        x1, y1 = min(max(x + bw, 0.0), rec.width), min(max(y + bh, 0.0), rec.height)
        if (x0, y0, x1, y1) != (x, y, x + bw, y + bh):
            clipped += 1
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                dropped += 1
                continue
        per_image[iid][0].append([x0, y0, x1, y1])
        per_image[iid][1].append(id_to_label[cid])
    for iid, (boxes, labels) in per_image.items():
        if boxes:
            records[iid].boxes = np.asarray(boxes, np.float32)
            records[iid].labels = np.asarray(labels, np.int64)
    if dropped or clipped:
        warnings.warn(
            f"{ann_file}: dropped {dropped} boxes with non-positive width/height or none inside the image; "
            f"clipped {clipped} boxes reaching outside the image",
            stacklevel=2,
        )
    return data, cats, list(records.values())


class CocoDetection(Dataset):
    """Items: (image (3, S, S) uint8, target dict with boxes (N, 4) xyxy in letterboxed pixels, labels (N,),
    image_id, scale (letterboxed / original), orig_size (H, W))."""

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        image_size: int | Resize,
        train: bool = False,
        categories: Categories | None = None,
        cache_images: bool = False,
        hflip: float = 0.5,
        photometric: bool = True,
        coco: dict | None = None,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.coco_json, self.categories, self.records = load_records(ann_file, image_dir, categories, coco)
        self.resize = image_size if isinstance(image_size, Resize) else Resize(image_size)
        self.image_size = self.resize.size
        self.letterbox = self.resize.transform(train)  # deterministic, except a training multiscale resize
        self.augment = augmentation(hflip, photometric) if train else None
        # Letterboxed (image, boxes, labels) per record: the letterbox is deterministic, so a cached dataset
        # decodes and resizes each image once and a step only pays for the augmentation.
        self._cache: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        if cache_images and (self.resize.deterministic_in_training or not train):
            self._cache = [self._letterboxed(i) for i in range(len(self.records))]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.categories.ids)

    def _letterboxed(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image (3, S, S) uint8, boxes (N, 4) xyxy letterboxed pixels, labels (N,))."""
        rec = self.records[index]
        sample = self.letterbox(make_sample(decode_image(rec.path), torch.from_numpy(rec.boxes),
                                            torch.from_numpy(rec.labels)))
        return (sample["image"].as_subclass(torch.Tensor), sample["boxes"].as_subclass(torch.Tensor).float(),
                sample["labels"])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        rec = self.records[index]
        image, boxes, labels = self._cache[index] if self._cache is not None else self._letterboxed(index)
        if self.augment is not None:
            image, boxes, labels = augmented(self.augment, image, boxes, labels)
        target = {
            "boxes": boxes,
            "labels": labels,
            "image_id": rec.image_id,
            "scale": self.resize.scale(rec.height, rec.width),  # at the evaluation size
            "orig_size": (rec.height, rec.width),
        }
        return image, target


def collate(batch: list[tuple[torch.Tensor, dict]], fill: int = 114) -> tuple[torch.Tensor, list[dict]]:
    """(B, 3, H, W) uint8: letterboxed squares stack as they are; keep-ratio images of several sizes are padded on
    the right and bottom to the largest (boxes stay valid)."""
    images = [b[0] for b in batch]
    h, w = max(im.shape[-2] for im in images), max(im.shape[-1] for im in images)
    if any(im.shape[-2:] != (h, w) for im in images):
        images = [torch.nn.functional.pad(im, (0, w - im.shape[-1], 0, h - im.shape[-2]), value=fill) for im in images]
    return torch.stack(images), [b[1] for b in batch]


def join_batches(*batches: tuple[torch.Tensor, list[dict]], fill: int = 114) -> tuple[torch.Tensor, list[dict]]:
    """Collated batches as one, in order: a step's labeled images, then its unlabeled ones. Batches of several sizes
    (keep-ratio images) are padded on the right and bottom to the largest, as `collate` pads images."""
    h, w = max(b[0].shape[-2] for b in batches), max(b[0].shape[-1] for b in batches)
    images = [torch.nn.functional.pad(b[0], (0, w - b[0].shape[-1], 0, h - b[0].shape[-2]), value=fill)
              for b in batches]
    return torch.cat(images), [t for b in batches for t in b[1]]
