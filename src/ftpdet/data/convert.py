"""YOLO and Pascal VOC datasets into the COCO layout every ftpdet command takes, and back.

`ftpdet data convert --from yolo|voc SRC --out DIR` writes DIR/{train,val}/ (the images, hard-linked where the
file system allows, else copied) and DIR/annotations/instances_{train,val}.json; `--from coco --to yolo|voc` writes
a COCO-layout dataset in those formats (for other tools, or to train on with `data.format`). Each reader checks what it reads and
fails in one line naming the file (and the line, for YOLO labels), so a broken label never reaches training.

Conventions, as the tools that own these formats use them:
- YOLO (ultralytics): `data.yaml` with `names` (a list, or a dict from index to name), `train` and `val` (an image
  folder, a list of folders or a text file listing images, relative to `path` or to the YAML's folder); an image's
  labels are the `.txt` file at the same place under `labels/` instead of `images/` (next to the image when its path
  has no `images/` folder); each line `class cx cy w h`, normalised to [0, 1]. An image without a label file has no
  objects.
- VOC: `Annotations/<id>.xml`, `JPEGImages/`, `ImageSets/Main/{train,val}.txt`. Pixel coordinates are 1-based and
  inclusive, so a box [xmin, xmax] covers xmax - xmin + 1 pixels from xmin - 1 (detectron2's reading). `difficult`
  objects become `iscrowd: 1`: evaluation ignores them, as VOC's own does, and training skips them. Categories are
  the class names found, sorted (VOC's 20 classes are in alphabetical order, so their ids come out as usual).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ftpdet.data.coco import image_size
from ftpdet.errors import DatasetError

SPLITS = ("train", "val")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Sample:
    """One image and its boxes in COCO pixels: (category index, x, y, w, h, iscrowd)."""

    path: Path
    width: int
    height: int
    objects: list[tuple[int, float, float, float, float, int]] = field(default_factory=list)


def read_dataset(fmt: str, src: str | Path) -> tuple[list[str], dict[str, list[Sample]]]:
    """Class names and the samples of each split of the YOLO or VOC dataset at `src`."""
    if fmt == "yolo":
        return read_yolo(Path(src))
    if fmt == "voc":
        return read_voc(Path(src))
    raise DatasetError(f"--from {fmt}: choose yolo or voc")


def convert(fmt: str, src: str | Path, out: str | Path, to: str = "coco") -> dict[str, dict[str, int]]:
    """Read the `fmt` dataset at `src` and write it to `out` as `to`; returns per-split counts. One side is COCO."""
    if (fmt == "coco") == (to == "coco"):
        raise DatasetError(f"--from {fmt} --to {to}: one side must be coco (yolo or voc to coco, or coco to yolo or voc)")
    if to != "coco":
        if to not in ("yolo", "voc"):
            raise DatasetError(f"--to {to}: choose coco, yolo or voc")
        names, splits = read_coco_layout(Path(src))
        writer = write_yolo_split if to == "yolo" else write_voc_split
        return {split: writer(Path(out), split, names, samples) for split, samples in splits.items()}
    names, splits = read_dataset(fmt, src)
    return {split: write_coco_split(Path(out), split, names, samples) for split, samples in splits.items()}


def coco_splits(fmt: str, src: str | Path) -> dict[str, dict]:
    """{split: COCO dict} of a YOLO or VOC dataset, read in place (`data.format`): what `convert` would write, with
    each image's absolute path as its file_name instead of a linked copy."""
    names, splits = read_dataset(fmt, src)
    return {split: coco_dict(names, samples, [str(s.path.resolve()) for s in samples])
            for split, samples in splits.items()}


def coco_dict(names: list[str], samples: list[Sample], file_names: list[str]) -> dict:
    """The COCO instances dict: image ids 1..N in order, category ids 1..C (class index + 1)."""
    images, annotations = [], []
    for i, (sample, name) in enumerate(zip(samples, file_names), 1):
        images.append({"id": i, "file_name": name, "width": sample.width, "height": sample.height})
        for c, x, y, w, h, crowd in sample.objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": c + 1,
                                "bbox": [round(v, 3) for v in (x, y, w, h)], "area": round(w * h, 3),
                                "iscrowd": crowd})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": c + 1, "name": n} for c, n in enumerate(names)]}


# -- YOLO ---------------------------------------------------------------------------------------------------------
def read_yolo(src: Path) -> tuple[list[str], dict[str, list[Sample]]]:
    yaml_path = src / "data.yaml" if src.is_dir() else src
    if not yaml_path.is_file():
        raise DatasetError(f"{yaml_path}: not found; --from yolo takes a data.yaml (or the folder holding it)")
    try:
        spec = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as e:
        raise DatasetError(f"{yaml_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise DatasetError(f"{yaml_path}: expected a mapping with names, train and val")
    names = _yolo_names(yaml_path, spec.get("names"))
    if "nc" in spec and spec["nc"] != len(names):
        raise DatasetError(f"{yaml_path}: nc is {spec['nc']} but names lists {len(names)} classes")
    root = yaml_path.parent / str(spec.get("path") or ".")
    splits = {}
    for split in SPLITS:
        if not spec.get(split):
            raise DatasetError(f"{yaml_path}: no '{split}' entry (an image folder, a list of folders or a text file)")
        images = _yolo_images(yaml_path, root, spec[split], split)
        splits[split] = [_yolo_sample(image, len(names)) for image in images]
    return names, splits


def _yolo_names(yaml_path: Path, names: object) -> list[str]:
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_path}: names must map class indices 0..N-1 to names") from None
        if keys != list(range(len(keys))):
            raise DatasetError(f"{yaml_path}: names must map class indices 0..{len(keys) - 1} to names, got {keys}")
        return [str(names[k] if k in names else names[str(k)]) for k in keys]
    raise DatasetError(f"{yaml_path}: 'names' must be a non-empty list or a dict from class index to name")


def _yolo_images(yaml_path: Path, root: Path, entry: object, split: str) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        where = root / str(item)
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif where.is_file() and where.suffix == ".txt":  # a list of image paths, relative to the root
            images += [root / line.strip() for line in where.read_text().splitlines() if line.strip()]
        else:
            raise DatasetError(f"{yaml_path}: {split} entry '{item}': no folder or .txt list at {where}")
    if not images:
        raise DatasetError(f"{yaml_path}: {split} has no images ({', '.join(map(str, entries))})")
    return images


def yolo_label_path(image: Path) -> Path:
    """ultralytics' rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    if "images" in parts[:-1]:
        i = len(parts) - 2 - parts[:-1][::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def _yolo_sample(image: Path, num_classes: int) -> Sample:
    height, width = image_size(image)
    sample = Sample(image, width, height)
    label = yolo_label_path(image)
    if not label.is_file():
        return sample
    for n, line in enumerate(label.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DatasetError(f"{label}:{n}: expected 5 numbers (class cx cy w h), got {len(fields)}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise DatasetError(f"{label}:{n}: not a number in '{line.strip()}'") from None
        c, cx, cy, w, h = values
        if not all(math.isfinite(v) for v in values):
            raise DatasetError(f"{label}:{n}: non-finite value in '{line.strip()}'")
        if c != int(c) or not 0 <= c < num_classes:
            raise DatasetError(f"{label}:{n}: class {fields[0]} is not an index in 0..{num_classes - 1}")
        x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        eps = 1e-6  # labels written with 6 decimals may overshoot the edge by rounding
        if w <= 0 or h <= 0 or min(x0, y0) < -eps or max(x1, y1) > 1 + eps:
            raise DatasetError(f"{label}:{n}: box (cx {cx:g}, cy {cy:g}, w {w:g}, h {h:g}) is not inside [0, 1]")
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, 1.0), min(y1, 1.0)
        sample.objects.append((int(c), x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height, 0))
    return sample


# -- VOC ----------------------------------------------------------------------------------------------------------
def read_voc(src: Path) -> tuple[list[str], dict[str, list[Sample]]]:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (src / sub).is_dir():
            raise DatasetError(f"{src / sub}: not found; --from voc takes a VOC root (Annotations/, JPEGImages/, "
                               "ImageSets/Main/)")
    parsed: dict[str, list[tuple[Path, int, int, list]]] = {}
    for split in SPLITS:
        list_file = src / "ImageSets" / "Main" / f"{split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: not found (the {split} image ids, one per line)")
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise DatasetError(f"{list_file}: lists no images")
        parsed[split] = [_voc_annotation(src, image_id) for image_id in ids]
    names = sorted({obj[0] for entries in parsed.values() for *_, objs in entries for obj in objs})
    index = {name: i for i, name in enumerate(names)}
    splits = {split: [Sample(path, w, h, [(index[o[0]], *o[1:]) for o in objs]) for path, w, h, objs in entries]
              for split, entries in parsed.items()}
    return names, splits


def _voc_annotation(src: Path, image_id: str) -> tuple[Path, int, int, list]:
    xml_path = src / "Annotations" / f"{image_id}.xml"
    if not xml_path.is_file():
        raise DatasetError(f"{xml_path}: not found (listed in ImageSets/Main)")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise DatasetError(f"{xml_path}: not valid XML ({e})") from None
    filename = (root.findtext("filename") or "").strip()
    image = src / "JPEGImages" / filename if filename else None
    if image is None or not image.is_file():
        image = src / "JPEGImages" / f"{image_id}.jpg"
    height, width = image_size(image)
    size = root.find("size")
    if size is not None and size.findtext("width") and size.findtext("height"):
        declared = (_number(xml_path, size, "width"), _number(xml_path, size, "height"))
        if declared != (width, height):
            raise DatasetError(f"{xml_path}: size says {declared[0]:g}x{declared[1]:g}, {image.name} is {width}x{height}")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(f"{xml_path}: object {k} has no name")
        box = obj.find("bndbox")
        if box is None:
            raise DatasetError(f"{xml_path}: object {k} ('{name}') has no bndbox")
        x0, y0, x1, y1 = (_number(xml_path, box, tag, f"object {k} ('{name}')") for tag in ("xmin", "ymin", "xmax", "ymax"))
        if not (1 <= x0 <= x1 <= width and 1 <= y0 <= y1 <= height):
            raise DatasetError(f"{xml_path}: object {k} ('{name}') box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not inside "
                               f"the {width}x{height} image (1-based, xmin <= xmax)")
        difficult = int((obj.findtext("difficult") or "0").strip() or 0) != 0
        objects.append((name, x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1, int(difficult)))
    return image, width, height, objects


def _number(xml_path: Path, node: ET.Element, tag: str, what: str = "size") -> float:
    text = (node.findtext(tag) or "").strip()
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{xml_path}: {what} {tag} is '{text}', not a number") from None
    if not math.isfinite(value):
        raise DatasetError(f"{xml_path}: {what} {tag} is {text}")
    return value


# -- shared -------------------------------------------------------------------------------------------------------
def write_coco_split(out: Path, split: str, names: list[str], samples: list[Sample]) -> dict[str, int]:
    """Link (or copy) the images to out/<split>/ and write out/annotations/instances_<split>.json atomically."""
    file_names: list[str] = []
    used: set[str] = set()
    for i, sample in enumerate(samples, 1):
        name = sample.path.name if sample.path.name not in used else f"{i:06d}_{sample.path.name}"
        file_names.append(name)
        used.add(name)
        _link(sample.path, out / split / name)
    (out / split).mkdir(parents=True, exist_ok=True)  # a split without images still gets its folder
    coco = coco_dict(names, samples, file_names)
    annotations = coco["annotations"]
    _write_atomic(out / "annotations" / f"instances_{split}.json", json.dumps(coco))
    return {"images": len(samples), "boxes": len(annotations), "crowd": sum(a["iscrowd"] for a in annotations)}


# -- COCO to YOLO / VOC ---------------------------------------------------------------------------------------------
def read_coco_layout(src: Path) -> tuple[list[str], dict[str, list[Sample]]]:
    """A dataset in ftpdet's layout (src/annotations/instances_{train,val}.json, src/{train,val}/) as samples,
    boxes clipped to their image; crowd annotations keep their flag (VOC's difficult, left out of YOLO labels)."""
    from ftpdet.data.coco import categories_of, read_coco_json

    names: list[str] | None = None
    splits = {}
    for split in SPLITS:
        data = read_coco_json(src / "annotations" / f"instances_{split}.json")  # validated: ids, references, boxes
        cats = categories_of(data)
        if names is None:
            names = cats.names
        elif cats.names != names:
            raise DatasetError(f"{src}: train and val list other categories ({names} vs {cats.names})")
        label = cats.id_to_label
        samples = {}
        for img in data["images"]:
            path = src / split / str(img["file_name"])
            height, width = image_size(path)
            samples[img["id"]] = Sample(path, width, height)
        for ann in data["annotations"]:
            sample = samples[ann["image_id"]]
            x, y, w, h = (float(v) for v in ann["bbox"])
            x0, y0 = min(max(x, 0.0), sample.width), min(max(y, 0.0), sample.height)
            x1, y1 = min(max(x + w, 0.0), sample.width), min(max(y + h, 0.0), sample.height)
            if x1 - x0 > 0 and y1 - y0 > 0:
                sample.objects.append((label[ann["category_id"]], x0, y0, x1 - x0, y1 - y0, int(bool(ann.get("iscrowd")))))
        splits[split] = list(samples.values())
    return names or [], splits


def _link(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(src, target)
    except OSError:  # another file system, or links refused: copy
        shutil.copyfile(src, target)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_yolo_split(out: Path, split: str, names: list[str], samples: list[Sample]) -> dict[str, int]:
    """out/images/<split>/, out/labels/<split>/<stem>.txt (class cx cy w h, normalised) and out/data.yaml."""
    boxes = crowd = 0
    for sample in samples:
        _link(sample.path, out / "images" / split / sample.path.name)
        lines = []
        for c, x, y, w, h, is_crowd in sample.objects:
            if is_crowd:  # YOLO has no ignore regions
                crowd += 1
                continue
            W, H = sample.width, sample.height
            lines.append(f"{c} {(x + w / 2) / W:.6f} {(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}")
        boxes += len(lines)
        _write_atomic(out / "labels" / split / f"{sample.path.stem}.txt", "".join(ln + "\n" for ln in lines))
    spec = {"path": ".", "train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
    _write_atomic(out / "data.yaml", yaml.safe_dump(spec, sort_keys=False))
    return {"images": len(samples), "boxes": boxes, "crowd": crowd}


def write_voc_split(out: Path, split: str, names: list[str], samples: list[Sample]) -> dict[str, int]:
    """out/JPEGImages/, out/Annotations/<id>.xml (1-based inclusive corners; crowd as difficult) and
    out/ImageSets/Main/<split>.txt; ids are `<split>_<stem>` so the splits never collide."""
    ids, boxes, crowd = [], 0, 0
    for sample in samples:
        image_id = f"{split}_{sample.path.stem}"
        ids.append(image_id)
        filename = f"{image_id}{sample.path.suffix}"
        _link(sample.path, out / "JPEGImages" / filename)
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = filename
        size = ET.SubElement(root, "size")
        for tag, value in (("width", sample.width), ("height", sample.height), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        for c, x, y, w, h, is_crowd in sample.objects:
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = names[c]
            ET.SubElement(obj, "difficult").text = str(is_crowd)
            box = ET.SubElement(obj, "bndbox")
            for tag, value in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
                ET.SubElement(box, tag).text = f"{value:.3f}".rstrip("0").rstrip(".")
            boxes += 1
            crowd += is_crowd
        _write_atomic(out / "Annotations" / f"{image_id}.xml", ET.tostring(root, encoding="unicode"))
    _write_atomic(out / "ImageSets" / "Main" / f"{split}.txt", "".join(i + "\n" for i in ids))
    return {"images": len(samples), "boxes": boxes, "crowd": crowd}
