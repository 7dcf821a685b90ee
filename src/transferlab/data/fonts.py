"""The fonts matplotlib ships, checked by rendering and split into source and held-out sets.

Held-out fonts give the "digits in unseen fonts" shift, so the pretraining source must never
draw with them. The split is a fixed rule on the sorted file names (see `_split`), so it is
the same on every machine with the same matplotlib.
"""
from __future__ import annotations

import os
import string
from functools import lru_cache

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LATIN = string.ascii_uppercase + string.ascii_lowercase + string.digits
# matplotlib's default font, upright and slanted: italic fonts match the slanted one better
REFERENCE_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Oblique.ttf")
MIN_SHAPE_CORRELATION = 0.42  # latin fonts score >= 0.55, cmsy10 (symbols at a-z) 0.28
MAX_DIGIT_HEIGHT_RATIO = 1.4  # lining digits <= 1.3; old-style (cmmi10) and symbol fonts >= 1.6
HELDOUT_EVERY = 4  # every 4th usable font (sorted by file name, from the 4th) is held out
_PROBE_SIZE = 48


def font_dir() -> str:
    """Where matplotlib keeps its bundled TrueType fonts."""
    return os.path.join(matplotlib.get_data_path(), "fonts/ttf")


def _probe(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    image = Image.new("L", (2 * _PROBE_SIZE, 2 * _PROBE_SIZE))
    ImageDraw.Draw(image).text((_PROBE_SIZE, _PROBE_SIZE), char, fill=255, font=font, anchor="mm")
    return np.asarray(image)


def _shape_vector(mask: np.ndarray) -> np.ndarray:
    """The glyph's ink box, blurred and shrunk to 8x8, so that stroke weight and serifs matter little."""
    ys, xs = np.nonzero(mask)
    crop = Image.fromarray(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    crop = crop.resize((32, 32), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(2))
    v = np.asarray(crop.resize((8, 8), Image.Resampling.BOX), dtype=np.float64).ravel()
    v = v - v.mean()
    return v / (np.linalg.norm(v) + 1e-9)


def _masks(path: str) -> list[np.ndarray]:
    font = ImageFont.truetype(path, _PROBE_SIZE)
    return [_probe(font, c) for c in LATIN]


@lru_cache(maxsize=None)
def _reference_shapes() -> tuple[np.ndarray, ...]:
    return tuple(np.array([_shape_vector(m) for m in _masks(os.path.join(font_dir(), r))]) for r in REFERENCE_FONTS)


def _shape_correlation(masks: list[np.ndarray]) -> float:
    """Mean correlation of each character's shape with the same character in the closer reference font."""
    shapes = np.array([_shape_vector(m) for m in masks])
    return max(float(np.mean(np.sum(shapes * ref, axis=1))) for ref in _reference_shapes())


def _digit_height_ratio(masks: list[np.ndarray]) -> float:
    heights = [np.ptp(np.nonzero(m)[0]) + 1 for m in masks[-10:]]
    return max(heights) / min(heights)


def is_usable(path: str) -> bool:
    """True if the font draws A-Z a-z 0-9 as distinct, non-empty latin glyphs with lining digits.

    Rendering catches what names do not: empty glyphs (STIXNonUni*, STIXSiz*, *Display),
    one box for everything (LastResortHE), symbols at latin code points (cmex10, cmsy10),
    and old-style digits of different heights (cmmi10, a maths italic).
    """
    masks = _masks(path)
    if any(not m.any() for m in masks) or len({m.tobytes() for m in masks}) < len(masks):
        return False
    return _shape_correlation(masks) >= MIN_SHAPE_CORRELATION and _digit_height_ratio(masks) <= MAX_DIGIT_HEIGHT_RATIO


@lru_cache(maxsize=None)
def usable_fonts() -> tuple[str, ...]:
    """All usable font paths, sorted by file name."""
    names = sorted(f for f in os.listdir(font_dir()) if f.endswith(".ttf"))
    return tuple(p for p in (os.path.join(font_dir(), f) for f in names) if is_usable(p))


def _split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every HELDOUT_EVERY-th usable font (indices 3, 7, 11, ...) is held out, the rest are source."""
    fonts = usable_fonts()
    held = tuple(f for i, f in enumerate(fonts) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1)
    return tuple(f for f in fonts if f not in held), held


@lru_cache(maxsize=None)
def source_fonts() -> tuple[str, ...]:
    """Fonts the pretraining source may draw with."""
    return _split()[0]


@lru_cache(maxsize=None)
def heldout_fonts() -> tuple[str, ...]:
    """Fonts kept for target shifts only; never used by the pretraining source."""
    return _split()[1]


@lru_cache(maxsize=None)
def source_digit_fonts() -> tuple[str, ...]:
    """Every second source font: the only ones that draw digits in the letters+digits source."""
    return source_fonts()[::2]


def __getattr__(name: str) -> tuple[str, ...]:
    """SOURCE_FONTS and HELDOUT_FONTS as lazy module constants."""
    lazy = {"SOURCE_FONTS": source_fonts, "HELDOUT_FONTS": heldout_fonts}
    if name in lazy:
        return lazy[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
