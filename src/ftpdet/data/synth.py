"""The built-in dataset: shape classes on cluttered backgrounds, written in COCO format (and the writer that
data/pictograms.py, the second built-in dataset, shares).

Why this design: the class is the *shape* (colour is random), objects range from ~6 px to most of
the image, and edges are anti-aliased and often blurred, so small-object recognition and exact
localisation are genuinely hard and a bigger model is clearly better. Every image is drawn from its
own generator seeded by (seed, split, index), so the output is byte-identical for a seed and does not
depend on how many images come before it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ftpdet.data.scene import SUPERSAMPLE, Occupancy, SynthObject
from ftpdet.files import ensure_writable
from ftpdet.progress import progress_bar

SHAPES: tuple[str, ...] = (
    "circle",
    "triangle",
    "square",
    "pentagon",
    "hexagon",
    "star",
    "cross",
    "ring",
    "crescent",
    "arrow",
)


def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    a = phase + np.arange(n) * 2 * np.pi / n
    return np.stack([np.cos(a), np.sin(a)], 1)


def _star() -> np.ndarray:
    a = -np.pi / 2 + np.arange(10) * np.pi / 5
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


_CROSS = np.array(
    [[-0.33, -1], [0.33, -1], [0.33, -0.33], [1, -0.33], [1, 0.33], [0.33, 0.33], [0.33, 1], [-0.33, 1],
     [-0.33, 0.33], [-1, 0.33], [-1, -0.33], [-0.33, -0.33]]
)
_ARROW = np.array([[-1, -0.3], [0.15, -0.3], [0.15, -0.8], [1, 0], [0.15, 0.8], [0.15, 0.3], [-1, 0.3]])


def shape_polygons(name: str) -> list[tuple[np.ndarray, int]]:
    """Unit-size polygons (points in [-1, 1]^2) with a fill value: 1 adds area, 0 cuts a hole."""
    circle = _regular(48)
    return {
        "circle": [(circle, 1)],
        "triangle": [(_regular(3, -np.pi / 2), 1)],
        "square": [(_regular(4, np.pi / 4) * math.sqrt(2) * 0.75, 1)],
        "pentagon": [(_regular(5, -np.pi / 2), 1)],
        "hexagon": [(_regular(6), 1)],
        "star": [(_star(), 1)],
        "cross": [(_CROSS, 1)],
        "ring": [(circle, 1), (circle * 0.55, 0)],
        "crescent": [(circle, 1), (circle * 0.85 + np.array([0.45, -0.1]), 0)],
        "arrow": [(_ARROW, 1)],
    }[name]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field + a faint oriented texture + pixel noise, float (H, W, 3) in [0, 255]."""
    g = int(rng.integers(3, 8))
    grid = rng.uniform(30, 225, size=(g, g, 3)).astype(np.float32)
    field = np.asarray(Image.fromarray(grid.astype(np.uint8)).resize((size, size), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.9)
    stripes = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 6.3))
    field += (rng.uniform(4, 22) * stripes)[..., None]
    field += rng.normal(0, rng.uniform(2, 10), size=field.shape).astype(np.float32)
    return np.clip(field, 0, 255)


def _strokes(rng: np.random.Generator, size: int, count: int) -> tuple[Image.Image, Image.Image]:
    """Distractor lines and arcs (arcs look like partial rings): an RGB layer and its alpha."""
    color = Image.new("RGB", (size, size))
    alpha = Image.new("L", (size, size), 0)
    dc, da = ImageDraw.Draw(color), ImageDraw.Draw(alpha)
    for _ in range(count):
        rgb = tuple(int(c) for c in rng.integers(0, 256, 3))
        width = int(rng.integers(1, 4))
        if rng.random() < 0.6:
            pts = [tuple(p) for p in rng.uniform(-0.1 * size, 1.1 * size, size=(int(rng.integers(2, 5)), 2))]
            dc.line(pts, fill=rgb, width=width)
            da.line(pts, fill=255, width=width)
        else:
            c, r = rng.uniform(0, size, 2), rng.uniform(4, 0.5 * size)
            bbox = [c[0] - r, c[1] - r, c[0] + r, c[1] + r]
            a0 = rng.uniform(0, 360)
            a1 = a0 + rng.uniform(40, 200)
            dc.arc(bbox, a0, a1, fill=rgb, width=width)
            da.arc(bbox, a0, a1, fill=255, width=width)
    return color, alpha


def _shape_coverage(
    rng: np.random.Generator, name: str, size: int, min_size: float, max_size: float
) -> tuple[np.ndarray, int, int] | None:
    """Draw one randomly placed shape; returns its coverage patch in [0, 1] and the patch origin."""
    extent = math.exp(rng.uniform(math.log(min_size), math.log(max_size)))
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.65)))
    sx, sy = extent / 2 * math.sqrt(aspect), extent / 2 / math.sqrt(aspect)
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    polys = [((p * [sx, sy]) @ rot.T, fill) for p, fill in shape_polygons(name)]
    pts = np.concatenate([p for p, _ in polys])
    lo, hi = pts.min(0), pts.max(0)
    # Centre so that at least ~60% of the shape's extent lies inside the image (truncation happens).
    span = hi - lo
    cmin = -lo - 0.4 * span
    cmax = size - hi + 0.4 * span
    if np.any(cmax <= cmin):
        return None
    centre = rng.uniform(cmin, cmax)
    x0, y0 = np.floor(centre + lo).astype(int) - 1
    x1, y1 = np.ceil(centre + hi).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    s = SUPERSAMPLE
    mask = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(mask)
    for p, fill in polys:
        q = (p + centre - [x0, y0]) * s
        draw.polygon([tuple(v) for v in q], fill=255 * fill)
    cov = np.asarray(mask.resize((x1 - x0, y1 - y0), Image.BOX), np.float32) / 255.0
    return cov, int(x0), int(y0)


def render_image(
    rng: np.random.Generator, size: int, num_classes: int, min_object_size: float = 6.0
) -> tuple[np.ndarray, list[SynthObject]]:
    """One image (H, W, 3) uint8 and its objects."""
    img = _background(rng, size)
    under, under_a = _strokes(rng, size, int(rng.integers(3, 10)))
    a = np.asarray(under_a, np.float32)[..., None] / 255.0 * rng.uniform(0.5, 1.0)
    img = img * (1 - a) + np.asarray(under, np.float32) * a

    placed = Occupancy(size)
    objects: list[SynthObject] = []
    n_obj = int(rng.integers(1, 7))
    for _ in range(n_obj):
        label = int(rng.integers(0, num_classes))
        for _attempt in range(10):
            drawn = _shape_coverage(rng, SHAPES[label], size, min_object_size, 0.9 * size)
            if drawn is not None and placed.fits(*drawn):
                break
        else:
            continue
        cov, x0, y0 = drawn
        h, w = cov.shape
        objects.append(placed.add(label, cov, x0, y0))

        alpha = cov
        if rng.random() < 0.5:  # soft edges: the true box is no longer obvious from the pixels
            blurred = Image.fromarray((cov * 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(rng.uniform(0.5, 1.8))
            )
            alpha = np.asarray(blurred, np.float32) / 255.0
        alpha = alpha * rng.uniform(0.85, 1.0)
        base = rng.uniform(0, 255, 3).astype(np.float32)
        # A mild shading gradient inside the object, so colour is not a flat cue either.
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        shade = (gx / max(w, 1) - 0.5) * rng.uniform(-40, 40) + (gy / max(h, 1) - 0.5) * rng.uniform(-40, 40)
        colour = np.clip(base + shade[..., None], 0, 255)
        patch = img[y0 : y0 + h, x0 : x0 + w]
        img[y0 : y0 + h, x0 : x0 + w] = patch * (1 - alpha[..., None]) + colour * alpha[..., None]

    over, over_a = _strokes(rng, size, int(rng.integers(0, 4)))  # strokes across objects occlude them
    a = np.asarray(over_a, np.float32)[..., None] / 255.0 * rng.uniform(0.4, 0.9)
    img = img * (1 - a) + np.asarray(over, np.float32) * a
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), objects


def write_split(
    out: Path, split: str, split_id: int, num_images: int, seed: int, size: int, num_classes: int, min_object_size: float,
    kind: str = "shapes",
) -> dict:
    """Render one split of dataset `kind` (KINDS) to out/<split>/*.png and return its COCO dict."""
    render, names, supercategory = _kind(kind)
    img_dir = out / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in progress_bar(range(num_images), desc=f"synth {split}", unit="img", lines=False):
        rng = np.random.default_rng([seed, split_id, i])
        pixels, objects = render(rng, size, num_classes, min_object_size)
        name = f"{i:06d}.png"
        Image.fromarray(pixels).save(img_dir / name, optimize=False)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for obj in objects:
            x0, y0, x1, y1 = obj.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": obj.label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": round(obj.area, 2),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c + 1, "name": names[c], "supercategory": supercategory} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


KINDS = ("shapes", "pictograms")  # the built-in datasets: shapes (the default) and data/pictograms.py


def _kind(kind: str):
    """(render function, class names, supercategory) of a built-in dataset."""
    if kind == "shapes":
        return render_image, SHAPES, "shape"
    if kind == "pictograms":
        from ftpdet.data.pictograms import PICTOGRAMS, render_pictograms

        return render_pictograms, tuple(PICTOGRAMS), "pictogram"
    raise ValueError(f"unknown dataset kind {kind!r}: expected {' or '.join(KINDS)}")


def synthesize(
    out: str | Path,
    seed: int = 0,
    num_train: int = 2000,
    num_val: int = 500,
    image_size: int = 128,
    num_classes: int = len(SHAPES),
    min_object_size: float = 6.0,
    kind: str = "shapes",
    num_unlabeled: int = 0,
) -> Path:
    """Write out/{train,val}/*.png and out/annotations/instances_{train,val}.json of the built-in dataset `kind`.
    With `num_unlabeled`, also out/unlabeled/*.png, images drawn from a stream of their own (data.unlabeled), and
    their labels in out/annotations/instances_unlabeled.json: read by no run but the all-labels ceiling."""
    _kind(kind)
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"--classes must be in 1..{len(SHAPES)}, got {num_classes}")
    if image_size < 32:
        raise ValueError(f"--image-size must be at least 32, got {image_size}")
    if num_unlabeled < 0:
        raise ValueError(f"--num-unlabeled must be at least 0, got {num_unlabeled}")
    if not 2 <= min_object_size <= 0.5 * image_size:
        raise ValueError(f"--min-object-size must be in [2, image_size / 2], got {min_object_size}")
    out = ensure_writable(out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, split_id, n in (("train", 0, num_train), ("val", 1, num_val)):
        _write(out, split, split_id, n, seed, image_size, num_classes, min_object_size, kind)
    if num_unlabeled:
        _write(out, "unlabeled", UNLABELED_SPLIT, num_unlabeled, seed, image_size, num_classes, min_object_size, kind)
    return out


UNLABELED_SPLIT = 2  # the unlabeled images' stream: (seed, 2, index), apart from train (0) and val (1)


def _write(out: Path, split: str, split_id: int, n: int, seed: int, image_size: int, num_classes: int,
           min_object_size: float, kind: str) -> None:
    coco = write_split(out, split, split_id, n, seed, image_size, num_classes, min_object_size, kind)
    coco["info"] = {"description": f"ftpdet built-in {kind}", "seed": seed, "image_size": image_size,
                    "min_object_size": min_object_size}
    if split == "unlabeled":
        coco["info"]["note"] = "labels of the unlabeled images: read by no run but the all-labels ceiling"
    (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def synthesize_unlabeled_once(out: str | Path, seed: int, num_unlabeled: int, image_size: int,
                              num_classes: int = len(SHAPES), min_object_size: float = 6.0, kind: str = "shapes") -> bool:
    """Add out/unlabeled/*.png and out/annotations/instances_unlabeled.json to a dataset already in `out` (what
    `synthesize(..., num_unlabeled=N)` writes there), unless they are there already (their own marker file).
    Returns True when it wrote them."""
    out = Path(out)
    marker = out / "synth_unlabeled.json"
    spec = {"seed": seed, "num_unlabeled": num_unlabeled, "image_size": image_size, "num_classes": num_classes,
            "min_object_size": min_object_size, "kind": kind}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return False
    if (out / "unlabeled").exists():
        for old in (out / "unlabeled").glob("*.png"):
            old.unlink()
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    _write(out, "unlabeled", UNLABELED_SPLIT, num_unlabeled, seed, image_size, num_classes, min_object_size, kind)
    marker.write_text(json.dumps(spec))
    return True


def synthesize_once(out: str | Path, **spec) -> bool:
    """synthesize(out, **spec) unless out already holds exactly that dataset (a marker file records the spec).
    Returns True when it wrote the dataset, False when it reused it."""
    out = Path(out)
    marker = out / "synth.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return False
    synthesize(out, **spec)
    marker.write_text(json.dumps(spec))
    return True
