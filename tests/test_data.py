"""Offline data sources: determinism, balance, polarity, font split, digit targets, splits, registry."""
from __future__ import annotations

import os

import numpy as np
import pytest

from transferlab.config import BUNDLED_TARGET_IMAGES
from transferlab.data import ArrayDataset, source_dataset, target_splits
from transferlab.data.digits import font_digits, mnist_sample, sklearn_digits, stratified_splits
from transferlab.data.fonts import heldout_fonts, source_digit_fonts, source_fonts, usable_fonts
from transferlab.data.glyphs import MNIST_STYLE, digit_classes, glyph_classes, plan_glyphs, render_glyphs

N = 330  # 6 per class for 55 classes, 7 or 8 per class for 45: exercises the remainder


@pytest.fixture(scope="module")
def glyphs() -> ArrayDataset:
    return render_glyphs(N, seed=0, variant="letters+digits")


@pytest.fixture(scope="module")
def digits_sk() -> ArrayDataset:
    return sklearn_digits()


def _names(paths: tuple[str, ...]) -> set[str]:
    return {os.path.basename(p) for p in paths}


def _polarity_gaps(ds: ArrayDataset) -> np.ndarray:
    """Per image: mean of the brightest 10% of grey pixels minus the median grey pixel."""
    grey = np.sort(ds.images.astype(np.float64).mean(axis=-1).reshape(len(ds), -1), axis=1)
    return grey[:, -grey.shape[1] // 10 :].mean(axis=1) - np.median(grey, axis=1)


def test_same_seed_same_bytes_and_other_seed_differs(glyphs: ArrayDataset) -> None:
    again = render_glyphs(N, seed=0, variant="letters+digits")
    assert glyphs.images.tobytes() == again.images.tobytes()
    assert np.array_equal(glyphs.labels, again.labels)
    other = render_glyphs(N, seed=1, variant="letters+digits")
    assert not np.array_equal(glyphs.images, other.images)
    assert not np.array_equal(glyphs.labels, other.labels)


def test_dtype_shape_and_balance(glyphs: ArrayDataset) -> None:
    assert glyphs.images.dtype == np.uint8 and glyphs.images.shape == (N, 32, 32, 3)
    assert glyphs.labels.dtype == np.int64
    counts = np.bincount(glyphs.labels, minlength=glyphs.num_classes)
    assert counts.max() - counts.min() <= 1 and counts.sum() == N
    letters = render_glyphs(N, seed=0, variant="letters", image_size=24)
    assert letters.images.shape == (N, 24, 24, 3)
    counts = np.bincount(letters.labels, minlength=45)
    assert counts.max() - counts.min() <= 1


def test_glyph_always_brighter_than_background(glyphs: ArrayDataset) -> None:
    gaps = _polarity_gaps(glyphs)
    assert gaps.min() > 40, f"image {gaps.argmin()} has a glyph barely brighter than its background"


def test_letter_classes_merge_look_alike_cases() -> None:
    letters = [c.name for c in glyph_classes("letters")]
    assert len(letters) == 45 and len(set(letters)) == 45
    assert {"C", "O", "S", "V", "W", "X", "Z"} <= set(letters)
    assert not {"c", "o", "s", "v", "w", "x", "z"} & set(letters)
    assert {"a", "b", "l"} <= set(letters)
    merged = {c.name: c.chars for c in glyph_classes("letters")}
    assert set(merged["C"]) == {"C", "c"} and merged["A"] == ("A",)


def test_letters_digits_has_55_classes_and_digits_only_in_digit_fonts(glyphs: ArrayDataset) -> None:
    assert glyphs.classes[45:] == tuple("0123456789") and glyphs.num_classes == 55
    plan = plan_glyphs(glyph_classes("letters+digits"), N, np.random.default_rng(0))
    assert np.array_equal(plan.labels, glyphs.labels)  # the plan is what render_glyphs drew
    digit_fonts = {f for y, f in zip(plan.labels, plan.fonts) if y >= 45}
    letter_fonts = {f for y, f in zip(plan.labels, plan.fonts) if y < 45}
    assert digit_fonts <= set(source_digit_fonts())
    assert letter_fonts - set(source_digit_fonts())  # letters also use the other source fonts
    assert 0.3 <= len(source_digit_fonts()) / len(source_fonts()) <= 0.7


def test_heldout_fonts_disjoint_and_symbol_fonts_excluded() -> None:
    source, held = _names(source_fonts()), _names(heldout_fonts())
    assert not source & held and len(held) >= 3 and len(source) >= 8
    assert any("Sans" in f for f in held) and any("Serif" in f or f.startswith(("STIX", "cm")) for f in held)
    symbols = {"cmex10.ttf", "cmsy10.ttf", "cmmi10.ttf", "LastResortHE-Regular.ttf", "DejaVuSansDisplay.ttf"}
    usable = _names(usable_fonts())
    assert not symbols & usable
    assert not any(f.startswith(("STIXNonUni", "STIXSiz")) for f in usable)
    assert source | held == usable


def test_font_digits_use_heldout_fonts_and_look_like_mnist() -> None:
    ds = font_digits(60, seed=3)
    assert ds.classes == tuple("0123456789") and ds.images.shape == (60, 32, 32, 3)
    assert np.array_equal(ds.images, font_digits(60, seed=3).images)
    plan = plan_glyphs(digit_classes(heldout_fonts()), 60, np.random.default_rng(3))
    assert set(plan.fonts) <= set(heldout_fonts())
    assert MNIST_STYLE.max_background == 0 and (np.median(ds.images.reshape(60, -1), axis=1) == 0).all()  # black
    assert _polarity_gaps(ds).min() > 50


def test_mnist_sample() -> None:
    ds = mnist_sample()
    assert ds.images.shape == (5000, 32, 32, 3) and ds.images.dtype == np.uint8
    assert set(np.unique(ds.labels)) == set(range(10)) and ds.classes == tuple("0123456789")
    assert (ds.images[:, :2] == 0).all() and (ds.images[:, :, -2:] == 0).all()  # the 2-px padding
    assert ds.images.max() == 255


def test_config_knows_the_size_of_each_bundled_target(digits_sk: ArrayDataset) -> None:
    # The config refuses oversized splits from these counts before any data loads.
    assert BUNDLED_TARGET_IMAGES == {"mnist": len(mnist_sample()), "sklearn-digits": len(digits_sk)}


def test_sklearn_digits_centred_on_black(digits_sk: ArrayDataset) -> None:
    ds = digits_sk
    assert ds.images.shape == (1797, 32, 32, 3) and set(np.unique(ds.labels)) == set(range(10))
    border = np.ones((32, 32), dtype=bool)
    border[6:26, 6:26] = False
    assert ds.images[:, border].max() == 0
    assert ds.images[:, 12:20, 12:20].mean() > 40  # ink in the middle


def _indexed(n: int, num_classes: int) -> ArrayDataset:
    """A data set whose image i stores i, so splits can be checked for overlap."""
    images = np.zeros((n, 2, 2, 3), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    labels = np.sort(np.random.default_rng(0).integers(num_classes, size=n))
    return ArrayDataset(images, labels, tuple(str(c) for c in range(num_classes)))


def _ids(ds: ArrayDataset) -> np.ndarray:
    return ds.images[:, 0, 0, 0].astype(int) + 256 * ds.images[:, 0, 0, 1].astype(int)


def test_stratified_splits_disjoint_exact_and_proportional() -> None:
    ds = _indexed(1000, 7)
    sizes = {"train": 300, "val": 97, "test": 503}
    splits = stratified_splits(ds, sizes, seed=5)
    ids = [_ids(s) for s in splits.values()]
    assert [len(i) for i in ids] == list(sizes.values())
    assert len(np.unique(np.concatenate(ids))) == sum(sizes.values())
    share = np.bincount(ds.labels) / len(ds)
    for name, split in splits.items():
        assert np.abs(np.bincount(split.labels, minlength=7) - sizes[name] * share).max() <= 2
        assert np.array_equal(split.labels, ds.labels[_ids(split)])
    again = stratified_splits(ds, sizes, seed=5)
    assert all(np.array_equal(_ids(again[k]), _ids(splits[k])) for k in sizes)
    assert not np.array_equal(_ids(stratified_splits(ds, sizes, seed=6)["train"]), _ids(splits["train"]))


def test_too_large_sizes_raise(digits_sk: ArrayDataset) -> None:
    with pytest.raises(ValueError, match=r"'sizes'.*1800.*1797"):
        stratified_splits(digits_sk, {"train": 1000, "test": 800}, seed=0)
    with pytest.raises(ValueError, match="'sizes'"):
        target_splits("mnist", {"train": -1}, seed=0)


def test_unknown_names_raise() -> None:
    with pytest.raises(ValueError) as info:
        source_dataset("foo", 10, 0)
    assert str(info.value) == "The 'source' parameter must be one of ['glyphs', 'glyphs+digits']. Got 'foo' instead."
    with pytest.raises(ValueError, match=r"The 'target' parameter must be one of \['mnist', 'sklearn-digits', "
                                         r"'font-digits', 'cifar10', 'stl10', 'stl10-as-cifar10'\]"):
        target_splits("bar", {"test": 10}, 0)
    with pytest.raises(ValueError, match="'variant'"):
        render_glyphs(10, 0, variant="greek")


def test_registry_builds_sources_and_target_splits() -> None:
    source = source_dataset("glyphs", 90, seed=2)
    assert source.num_classes == 45 and len(source) == 90
    splits = target_splits("font-digits", {"train": 40, "test": 20}, seed=2)
    assert {k: len(v) for k, v in splits.items()} == {"train": 40, "test": 20}
    assert np.bincount(splits["train"].labels, minlength=10).tolist() == [4] * 10
