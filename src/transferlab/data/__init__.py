"""Offline data: pretraining sources and digit targets, picked by name from two registries."""
from __future__ import annotations

from functools import partial
from typing import Callable

from transferlab.data.arrays import ArrayDataset
from transferlab.data.digits import check_sizes, font_digits, mnist_sample, sklearn_digits, stratified_splits
from transferlab.data.glyphs import render_glyphs
from transferlab.data.real import load_real, stl10_as_cifar10

__all__ = ["ArrayDataset", "SOURCES", "TARGETS", "source_dataset", "target_splits"]

# name -> (n, seed) -> dataset
SOURCES: dict[str, Callable[[int, int], ArrayDataset]] = {
    "glyphs": partial(render_glyphs, variant="letters"),
    "glyphs+digits": partial(render_glyphs, variant="letters+digits"),
}

# name -> (images needed, seed) -> dataset to split; fixed data sets ignore both
TARGETS: dict[str, Callable[[int, int], ArrayDataset]] = {
    "mnist": lambda n, seed: mnist_sample(),
    "sklearn-digits": lambda n, seed: sklearn_digits(),
    "font-digits": font_digits,
    "cifar10": lambda n, seed: load_real("cifar10"),   # local files only (data/real.py)
    "stl10": lambda n, seed: load_real("stl10"),
    "stl10-as-cifar10": lambda n, seed: stl10_as_cifar10(),   # a shift of cifar10 (data/shifts.py)
}


def _lookup(registry: dict[str, Callable], parameter: str, name: str) -> Callable:
    if name not in registry:
        raise ValueError(f"The {parameter!r} parameter must be one of {list(registry)}. Got {name!r} instead.")
    return registry[name]


def source_dataset(name: str, n: int, seed: int) -> ArrayDataset:
    """n pretraining images of the named source, deterministic in seed."""
    return _lookup(SOURCES, "source", name)(n, seed)


def target_splits(name: str, sizes: dict[str, int], seed: int) -> dict[str, ArrayDataset]:
    """Disjoint stratified splits of the named target; rendered targets draw exactly sum(sizes) images."""
    load = _lookup(TARGETS, "target", name)
    check_sizes(sizes)
    return stratified_splits(load(sum(sizes.values()), seed), sizes, seed)
