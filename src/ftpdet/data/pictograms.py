"""The second built-in dataset: pictograms of real things on photographs and terrain, written in COCO format.

Why: FTPD's defaults are chosen on the shapes (data/synth.py); this set measures them, unchanged, on data unlike
the shapes in every way that matters to a detector:
- backgrounds are crops of real images (a photograph, a photographed object, two shaded-relief terrain maps) at
  random scales and colour casts, instead of smooth colour fields with stripes;
- objects are ten pictograms of real things (airplane, umbrella, scissors, ...) filled with real texture, instead of
  flat-coloured geometric shapes; five more pictograms appear as unlabelled distractors (hard negatives);
- more and smaller objects (up to 10 per image, most under a quarter of the image side) with an upright pose, so
  the classes differ in fine structure rather than outline alone.
Everything comes from files that ship inside matplotlib (its sample data and its DejaVu Sans font): no download.
As with the shapes, each image has its own generator seeded by (seed, split, index): same seed, same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ftpdet.data.scene import SUPERSAMPLE, Occupancy, SynthObject

# Class name -> its glyph in DejaVu Sans. Chosen to be pictograms of real objects with distinct fine structure.
PICTOGRAMS: dict[str, str] = {
    "airplane": "\u2708",
    "umbrella": "\u2602",
    "scissors": "\u2702",
    "telephone": "\u260e",
    "anchor": "\u2693",
    "chess knight": "\u265e",
    "snowflake": "\u2744",
    "coffee": "\u2615",
    "envelope": "\u2709",
    "gear": "\u2699",
}
DISTRACTORS = ("\u2600", "\u2601", "\u2665", "\u262f", "\u273f")  # sun, cloud, heart, yin-yang, flower: unlabelled
GLYPH_PX = 160  # glyphs are rasterised once at this size, then resized per object


def _mpl_data() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path())


@lru_cache(maxsize=1)
def textures() -> tuple[np.ndarray, ...]:
    """The real images everything is cut from, (H, W, 3) uint8: a photograph (Grace Hopper), a photographed object
    (a blue gift pack, on white), and two elevation maps rendered as shaded relief (matplotlib's LightSource)."""
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    sample = _mpl_data() / "sample_data"
    photo = np.asarray(Image.open(sample / "grace_hopper.jpg").convert("RGB"))
    pack = Image.open(sample / "Minduka_Present_Blue_Pack.png").convert("RGBA")
    white = Image.new("RGBA", pack.size, (255, 255, 255, 255))
    pack = np.asarray(Image.alpha_composite(white, pack).convert("RGB"))
    light = LightSource(azdeg=315, altdeg=45)
    relief = []
    for name, key, cmap in (("jacksboro_fault_dem.npz", "elevation", "gist_earth"), ("topobathy.npz", "topo", "terrain")):
        with np.load(sample / name) as z:
            elevation = z[key].astype(np.float64)
        rgb = light.shade(elevation, cmap=colormaps[cmap], blend_mode="overlay", vert_exag=0.05 if key == "topo" else 1)
        relief.append((np.clip(rgb[..., :3], 0, 1) * 255).astype(np.uint8))
    return (photo, pack, *relief)


@lru_cache(maxsize=None)
def glyph_mask(char: str) -> np.ndarray:
    """(h, w) float32 coverage in [0, 1] of one glyph, tightly cropped, rasterised at GLYPH_PX."""
    font = ImageFont.truetype(str(_mpl_data() / "fonts" / "ttf" / "DejaVuSans.ttf"), GLYPH_PX)
    canvas = Image.new("L", (2 * GLYPH_PX, 2 * GLYPH_PX), 0)
    ImageDraw.Draw(canvas).text((GLYPH_PX // 4, GLYPH_PX // 4), char, fill=255, font=font)
    bbox = canvas.getbbox()
    if bbox is None:
        raise RuntimeError(f"DejaVu Sans has no glyph for U+{ord(char):04X}")
    return np.asarray(canvas.crop(bbox), np.float32) / 255.0


def _crop(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random crop of a random texture, resized to (height, width), flipped and colour-cast: float32 (H, W, 3)."""
    src = textures()[int(rng.integers(len(textures())))]
    h, w = src.shape[:2]
    side = rng.uniform(0.25, 1.0) * min(h, w)
    ch, cw = int(max(8, side * math.sqrt(height / width))), int(max(8, side * math.sqrt(width / height)))
    ch, cw = min(ch, h), min(cw, w)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    patch = Image.fromarray(src[y : y + ch, x : x + cw]).resize((width, height), Image.BICUBIC)
    out = np.asarray(patch, np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    gain = rng.uniform(0.6, 1.4, 3).astype(np.float32)
    return np.clip(out * gain + rng.uniform(-30, 30), 0, 255)


def _coverage(rng: np.random.Generator, char: str, size: int, min_size: float, max_size: float
              ) -> tuple[np.ndarray, int, int] | None:
    """One glyph at a random extent, aspect, small tilt and place (>= ~60% of it inside the image): its coverage
    patch in [0, 1], clipped to the image, and the patch's origin."""
    mask = glyph_mask(char)
    extent = math.exp(rng.uniform(math.log(min_size), math.log(max_size)))
    aspect = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
    gh, gw = mask.shape
    scale = extent / max(gh, gw)
    w, h = max(2, round(gw * scale * math.sqrt(aspect))), max(2, round(gh * scale / math.sqrt(aspect)))
    s = SUPERSAMPLE
    big = Image.fromarray((mask * 255).astype(np.uint8)).resize((w * s, h * s), Image.BILINEAR)
    big = big.rotate(rng.uniform(-20, 20), resample=Image.BILINEAR, expand=True)
    pw, ph = -(-big.width // s), -(-big.height // s)
    padded = Image.new("L", (pw * s, ph * s), 0)
    padded.paste(big, (0, 0))
    cov = np.asarray(padded.resize((pw, ph), Image.BOX), np.float32) / 255.0
    lo_x, hi_x = -0.4 * pw, size - 0.6 * pw
    lo_y, hi_y = -0.4 * ph, size - 0.6 * ph
    if hi_x <= lo_x or hi_y <= lo_y:
        return None
    x0, y0 = int(rng.uniform(lo_x, hi_x)), int(rng.uniform(lo_y, hi_y))
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + pw, size), min(y0 + ph, size)
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return None
    return cov[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0], cx0, cy0


@dataclass
class _Paste:
    cov: np.ndarray
    x0: int
    y0: int


def _paint(rng: np.random.Generator, img: np.ndarray, paste: _Paste) -> None:
    """Fill the glyph with a texture crop, sometimes outlined, sometimes with soft edges."""
    cov, x0, y0 = paste.cov, paste.x0, paste.y0
    h, w = cov.shape
    alpha = cov
    if rng.random() < 0.4:
        alpha = np.asarray(Image.fromarray((cov * 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2))), np.float32) / 255.0
    fill = _crop(rng, w, h)
    region = img[y0 : y0 + h, x0 : x0 + w]
    if rng.random() < 0.5:  # a dark or light rim, as printed pictograms often have
        rim = np.asarray(Image.fromarray((cov * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(3)), np.float32) / 255.0
        rim = np.clip(rim - cov, 0, 1)[..., None]
        region[:] = region * (1 - rim) + (0.0 if rng.random() < 0.6 else 255.0) * rim
    a = (alpha * rng.uniform(0.85, 1.0))[..., None]
    region[:] = region * (1 - a) + fill * a


def render_pictograms(rng: np.random.Generator, size: int, num_classes: int, min_object_size: float = 6.0
                      ) -> tuple[np.ndarray, list[SynthObject]]:
    """One image (H, W, 3) uint8 and its labelled objects."""
    names = list(PICTOGRAMS)[:num_classes]
    img = _crop(rng, size, size)
    for _ in range(int(rng.integers(0, 3))):  # distractors first: objects may cover them, never the reverse
        drawn = _coverage(rng, DISTRACTORS[int(rng.integers(len(DISTRACTORS)))], size, min_object_size, 0.5 * size)
        if drawn is not None:
            _paint(rng, img, _Paste(*drawn))

    placed = Occupancy(size)
    objects: list[SynthObject] = []
    for _ in range(int(rng.integers(1, 11))):
        label = int(rng.integers(0, num_classes))
        for _attempt in range(10):
            drawn = _coverage(rng, PICTOGRAMS[names[label]], size, min_object_size, 0.6 * size)
            if drawn is not None and placed.fits(*drawn):
                break
        else:
            continue
        objects.append(placed.add(label, *drawn))
        _paint(rng, img, _Paste(*drawn))
    noise = rng.normal(0, rng.uniform(1, 6), size=img.shape).astype(np.float32)
    return np.clip(img + noise + 0.5, 0, 255).astype(np.uint8), objects
