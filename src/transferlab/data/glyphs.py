"""Procedurally rendered glyphs: the offline pretraining source, and the renderer behind font digits.

Every image is a font glyph on a 64x64 canvas under a random affine, always brighter than
its background (fixed polarity: with mixed polarity a small ResNet stayed at chance, see
LESSONS.md), then area-downsampled. A `Style` says what the background and colours look
like, so MNIST-like font digits reuse the same code. Output is a deterministic function
of (n, seed, variant): one `np.random.default_rng(seed)` stream draws everything.
"""
from __future__ import annotations

import itertools
import math
import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data as skdata
from skimage.measure import euler_number

from transferlab.data.arrays import ArrayDataset
from transferlab.data.fonts import source_digit_fonts, source_fonts

CANVAS = 64  # render size; the font size (em) is one canvas, scaled by the affine
MERGED_LOWER = "cosvwxz"  # lower case looks like upper case: one class, named by the upper case
STROKES = (1, 2, 3, 4)  # stroke thickening in px at em = canvas
MAX_ROTATION_DEG = 15.0
SCALE_RANGE = (0.7, 1.1)  # em size as a fraction of the canvas, shrunk where the ink would overflow FIT_BOX
FIT_BOX = 0.8  # largest ink side as a fraction of the canvas: bigger glyphs touched the border and hid the background
MAX_SHEAR = 0.2
MAX_SHIFT_PX = 4.0
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
PHOTO_ZOOMS = (1.0, 1.5, 2.0, 2.5, 3.0)  # a canvas-sized crop covers 64 to 192 photo pixels
PHOTO_BLEND = 0.5  # blend photo crops this far toward their mean colour: texture, not clutter


@dataclass(frozen=True)
class Style:
    """How images look: backgrounds up to `max_background` grey levels, glyph `min_contrast` brighter."""

    photo_fraction: float
    gradient_fraction: float  # of the non-photo images; the rest are plain
    max_background: float
    min_contrast: float
    colour: bool  # random hues for glyph and background, else grey


SOURCE_STYLE = Style(photo_fraction=0.4, gradient_fraction=0.5, max_background=155.0, min_contrast=100.0, colour=True)
MNIST_STYLE = Style(photo_fraction=0.0, gradient_fraction=0.0, max_background=0.0, min_contrast=200.0, colour=False)


@dataclass(frozen=True)
class GlyphClass:
    """One label: drawn as any of `chars` in any of `fonts`."""

    name: str
    chars: tuple[str, ...]
    fonts: tuple[str, ...]


@dataclass(frozen=True)
class GlyphPlan:
    """What each image shows, decided before any pixel is drawn."""

    labels: np.ndarray
    chars: tuple[str, ...]
    fonts: tuple[str, ...]
    classes: tuple[str, ...]


def letter_classes(fonts: tuple[str, ...]) -> tuple[GlyphClass, ...]:
    """45 classes: A-Z, then the lower-case letters that do not look like their upper case."""
    upper = [GlyphClass(u, (u, u.lower()) if u.lower() in MERGED_LOWER else (u,), fonts) for u in string.ascii_uppercase]
    lower = [GlyphClass(c, (c,), fonts) for c in string.ascii_lowercase if c not in MERGED_LOWER]
    return tuple(upper + lower)


def digit_classes(fonts: tuple[str, ...]) -> tuple[GlyphClass, ...]:
    """The 10 digit classes "0".."9"."""
    return tuple(GlyphClass(d, (d,), fonts) for d in string.digits)


VARIANTS = {
    "letters": lambda: letter_classes(source_fonts()),
    # digits in only part of the fonts: pretrained features then transfer to digits in other fonts
    "letters+digits": lambda: letter_classes(source_fonts()) + digit_classes(source_digit_fonts()),
}


def glyph_classes(variant: str) -> tuple[GlyphClass, ...]:
    """The classes of a source variant, with the fonts each may be drawn in."""
    if variant not in VARIANTS:
        raise ValueError(f"The 'variant' parameter must be one of {list(VARIANTS)}. Got {variant!r} instead.")
    return VARIANTS[variant]()


def balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """n // C of every class, the remainder one each to the first classes, in shuffled order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def plan_glyphs(classes: tuple[GlyphClass, ...], n: int, rng: np.random.Generator) -> GlyphPlan:
    """Balanced labels, then a uniformly random character and font of each image's class."""
    labels = balanced_labels(n, len(classes), rng)
    char_picks, font_picks = rng.integers(1 << 30, size=(2, n))
    chars = tuple(classes[y].chars[i % len(classes[y].chars)] for y, i in zip(labels, char_picks))
    fonts = tuple(classes[y].fonts[j % len(classes[y].fonts)] for y, j in zip(labels, font_picks))
    return GlyphPlan(labels, chars, fonts, tuple(c.name for c in classes))


@lru_cache(maxsize=None)
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, CANVAS)


@lru_cache(maxsize=None)
def glyph_mask(path: str, char: str, stroke: int) -> Image.Image:
    """The glyph's coverage (0-255) cropped to its ink box, at em = canvas: rasterised once, reused."""
    image = Image.new("L", (3 * CANVAS, 3 * CANVAS))
    ImageDraw.Draw(image).text(
        (1.5 * CANVAS, 1.5 * CANVAS), char, fill=255, font=_font(path), anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    return image.crop(image.getbbox())


def _topology(path: str, char: str, stroke: int) -> int:
    return int(euler_number(np.asarray(glyph_mask(path, char, stroke)) >= 128))


@lru_cache(maxsize=None)
def legible_strokes(path: str, char: str) -> tuple[int, ...]:
    """STROKES up to the first that changes the glyph's topology (Euler number): thicker ones
    closed counters (bold mono 'm' became a blob) or merged dots into stems, and a stroke past
    a change can restore the number by filling the glyph (cmb10 'v' became a triangle)."""
    plain = _topology(path, char, 0)
    kept = tuple(itertools.takewhile(lambda s: _topology(path, char, s) == plain, STROKES))
    return kept or STROKES[:1]


def _affine_inverse(mask: Image.Image, rng: np.random.Generator) -> tuple[float, ...]:
    """PIL's output->input coefficients for a random rotation, scale, shear and shift about the centre.

    forward = scale * rotation(theta) @ [[1, shear], [0, 1]]; its inverse is written out (2x2
    numpy matrices cost more than the warp itself).
    """
    scale = min(rng.uniform(*SCALE_RANGE), FIT_BOX * CANVAS / max(mask.size))
    theta = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR)
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    a, b, d, e = cos + shear * sin, sin - shear * cos, -sin, cos
    cx, cy = CANVAS / 2 + rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX), CANVAS / 2 + rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX)
    return (a, b, mask.width / 2 - a * cx - b * cy, d, e, mask.height / 2 - d * cx - e * cy)


def _coverage(mask: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """The transformed glyph as float coverage in [0, 1], shape (CANVAS, CANVAS)."""
    warped = mask.transform((CANVAS, CANVAS), Image.Transform.AFFINE, _affine_inverse(mask, rng), Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.float32) / 255.0


def _load_photo(name: str) -> Image.Image | None:
    try:
        return Image.fromarray(getattr(skdata, name)()).convert("RGB")
    except (OSError, ImportError, ValueError):  # a photo that would need a download
        return None


@lru_cache(maxsize=None)
def _photo_pyramid() -> tuple[np.ndarray, ...]:
    """Every offline photo at every zoom-out of PHOTO_ZOOMS, channels first, uint8.

    Shrinking once here makes a background a plain slice: resizing a crop per image cost
    more than all the rest of the rendering.
    """
    photos = [p for p in map(_load_photo, PHOTOS) if p is not None]
    if not photos:
        raise RuntimeError(f"none of scikit-image's photos {PHOTOS} could be loaded offline")
    return tuple(
        np.asarray(p.resize((round(p.width / z), round(p.height / z)), Image.Resampling.LANCZOS)).transpose(2, 0, 1).copy()
        for p in photos
        for z in PHOTO_ZOOMS
    )


_RAMP = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, CANVAS), np.linspace(-0.5, 0.5, CANVAS))).astype(np.float32)


def _dark_colour(rng: np.random.Generator, style: Style) -> np.ndarray:
    """A colour, shape (3, 1, 1), whose brightest channel is at most style.max_background."""
    level = rng.uniform(0.0, style.max_background)
    hue = rng.uniform(0.0, 1.0, size=3) if style.colour else np.ones(3)
    return (hue / hue.max() * level).astype(np.float32)[:, None, None]


def _gradient(rng: np.random.Generator, style: Style) -> np.ndarray:
    a, b = _dark_colour(rng, style), _dark_colour(rng, style)
    angle = rng.uniform(0.0, 2 * np.pi)
    t = (np.cos(angle) * _RAMP[0] + np.sin(angle) * _RAMP[1]) / np.sqrt(2) + 0.5
    return a + (b - a) * t


def _photo(rng: np.random.Generator, style: Style) -> np.ndarray:
    """A random photo crop, blended toward its mean colour and darkened to at most style.max_background."""
    photo = _photo_pyramid()[rng.integers(len(_photo_pyramid()))]
    y, x = rng.integers(photo.shape[1] - CANVAS + 1), rng.integers(photo.shape[2] - CANVAS + 1)
    crop = photo[:, y : y + CANVAS, x : x + CANVAS].astype(np.float32)
    crop = (1 - PHOTO_BLEND) * crop + PHOTO_BLEND * crop.reshape(3, -1).mean(axis=1)[:, None, None]
    return crop * np.float32(rng.uniform(0.4, 1.0) * style.max_background / max(crop.max(), 1.0))


def _background(rng: np.random.Generator, style: Style) -> np.ndarray:
    """A (3, CANVAS, CANVAS) background: photo, gradient or plain, never brighter than style.max_background."""
    u = rng.uniform()
    if u < style.photo_fraction:
        return _photo(rng, style)
    if u < style.photo_fraction + (1 - style.photo_fraction) * style.gradient_fraction:
        return _gradient(rng, style)
    return np.broadcast_to(_dark_colour(rng, style), (3, CANVAS, CANVAS))


def _glyph_colour(rng: np.random.Generator, style: Style, local_background: float) -> np.ndarray:
    """A colour, shape (3, 1, 1), whose mean is at least style.min_contrast above the background under the glyph."""
    level = rng.uniform(min(local_background + style.min_contrast, 255.0), 255.0)
    base = rng.uniform(0.0, 255.0, size=3) if style.colour else np.zeros(3)
    toward_white = max(0.0, (level - base.mean()) / (255.0 - base.mean()))
    return (base + toward_white * (255.0 - base)).astype(np.float32)[:, None, None]


def _render_one(mask: Image.Image, rng: np.random.Generator, style: Style) -> np.ndarray:
    """One (CANVAS, CANVAS, 3) uint8 image; channels-first inside, where numpy is fastest."""
    alpha = _coverage(mask, rng)
    background = _background(rng, style)
    brightness = (background[0] + background[1] + background[2]) / 3
    colour = _glyph_colour(rng, style, float(brightness[alpha > 0].max()))
    image = np.rint(background + (colour - background) * alpha)  # convex: stays in [0, 255]
    return image.transpose(1, 2, 0).astype(np.uint8, order="C")


def render_plan(plan: GlyphPlan, rng: np.random.Generator, style: Style, image_size: int) -> ArrayDataset:
    """Draw every planned glyph at CANVAS px and area-downsample to image_size."""
    images = np.empty((len(plan.labels), image_size, image_size, 3), dtype=np.uint8)
    for i, (char, font) in enumerate(zip(plan.chars, plan.fonts)):
        mask = glyph_mask(font, char, int(rng.choice(legible_strokes(font, char))))
        canvas = Image.fromarray(_render_one(mask, rng, style))
        images[i] = np.asarray(canvas.resize((image_size, image_size), Image.Resampling.BOX))
    return ArrayDataset(images, plan.labels, plan.classes)


def _check(n: int, image_size: int) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"The 'n' parameter must be an integer >= 1. Got {n!r} instead.")
    if not 8 <= image_size <= CANVAS:
        raise ValueError(f"The 'image_size' parameter must be in [8, {CANVAS}]. Got {image_size!r} instead.")


def render_classes(classes: tuple[GlyphClass, ...], n: int, seed: int, style: Style, image_size: int = 32) -> ArrayDataset:
    """n balanced images of the given classes: plan, then draw, from one seeded stream."""
    _check(n, image_size)
    rng = np.random.default_rng(seed)
    return render_plan(plan_glyphs(classes, n, rng), rng, style, image_size)


def render_glyphs(n: int, seed: int, variant: str = "letters", image_size: int = 32) -> ArrayDataset:
    """The pretraining source: 45 letter classes ("letters") or 55 with digits ("letters+digits")."""
    return render_classes(glyph_classes(variant), n, seed, SOURCE_STYLE, image_size)
