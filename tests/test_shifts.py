"""Distribution shifts: deterministic from their seed, different from the ID data, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.config import ParameterError
from transferlab.data.digits import mnist_sample
from transferlab.data.shifts import (COVERED, SHIFTS, UNSEEN, ShiftNames, corrupt, get_shift, normalised_severity,
                                     shift_data, shift_dataset)
from transferlab.data.device import DeviceData

CORRUPTIONS = [name for name, s in SHIFTS.items() if s.corruption is not None]
DATASETS = [name for name, s in SHIFTS.items() if s.corruption is None and s.files is None]  # real files: test_hub
RANDOM = ["gaussian-noise", "photo-background"]   # the others are deterministic functions of the image


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """64 real MNIST digits, uint8 NCHW."""
    ds = mnist_sample().subset(np.arange(64))
    return DeviceData.from_arrays(ds, "cpu").images


def test_every_shift_has_a_kind_and_a_description():
    assert {s.kind for s in SHIFTS.values()} == {COVERED, UNSEEN}
    assert all(s.description and s.name == name for name, s in SHIFTS.items())
    assert {"sklearn-digits", "font-digits"} <= set(DATASETS) and len(CORRUPTIONS) >= 3


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_is_deterministic_and_changes_the_images(digits, name):
    a = corrupt(digits, name, 3, seed=0)
    assert a.dtype == torch.uint8 and a.shape == digits.shape
    assert torch.equal(a, corrupt(digits, name, 3, seed=0))
    changed = (a != digits).float().mean().item()
    assert changed > 0.05, f"{name} changed only {changed:.1%} of the pixels"
    if name in RANDOM:
        assert not torch.equal(a, corrupt(digits, name, 3, seed=1))


@pytest.mark.parametrize("name", ["gaussian-noise", "gaussian-blur", "photo-background"])
def test_severity_grows_after_standardisation(digits, name):
    levels = [normalised_severity(digits, corrupt(digits, name, s, seed=0)) for s in (1, 3, 5)]
    assert 0 < levels[0] < levels[1] < levels[2]


def test_standardisation_removes_most_of_a_contrast_corruption(digits):
    """LESSONS.md: per-image standardisation undoes a contrast change up to quantisation."""
    assert normalised_severity(digits, digits) == 0.0
    contrast = normalised_severity(digits, corrupt(digits, "contrast", 5, seed=0))
    noise = normalised_severity(digits, corrupt(digits, "gaussian-noise", 1, seed=0))
    assert contrast < 0.1 and contrast < noise


def test_photo_background_keeps_the_digit_brighter_than_its_background(digits):
    out = corrupt(digits, "photo-background", 5, seed=0).float().mean(dim=1)
    ink = digits[:, 0] > 200
    for i in range(len(digits)):
        assert out[i][ink[i]].min() >= out[i][~(digits[i, 0] > 0)].max() + 50


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_shift_is_deterministic_and_not_mnist(name):
    a, b = shift_dataset(name, 40, seed=0), shift_dataset(name, 40, seed=0)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, shift_dataset(name, 40, seed=1).images)
    assert sorted(set(a.labels)) == list(range(10))
    mnist = mnist_sample().images[:2000].reshape(2000, -1).astype(np.int16)
    nearest = [np.abs(mnist - im.reshape(-1).astype(np.int16)).mean(1).min() for im in a.images]
    assert min(nearest) > 5, "a shifted image is (nearly) an MNIST image"


def test_shift_data_corrupts_a_prefix_of_the_id_test_images(digits):
    id_test = DeviceData(digits, torch.arange(len(digits)) % 10)
    out = shift_data("gaussian-blur", id_test, 2, seed=0, n=16)
    assert len(out) == 16 and torch.equal(out.labels, id_test.labels[:16])
    assert torch.equal(out.images, corrupt(digits[:16], "gaussian-blur", 2, seed=0))


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_names_and_severities_are_one_line_errors_naming_the_parameter(digits):
    with pytest.raises(ParameterError) as e:
        corrupt(digits, "fog", 3, seed=0)
    assert _one_line(e).startswith("The 'name' parameter must be one of") and "'fog'" in str(e.value)
    with pytest.raises(ParameterError) as e:
        corrupt(digits, "gaussian-noise", 7, seed=0)
    assert _one_line(e) == "The 'severity' parameter must be an int in the range [1, 5]. Got 7 instead."
    with pytest.raises(ParameterError) as e:
        corrupt(digits, "gaussian-noise", 2.5, seed=0)
    assert "'severity'" in _one_line(e)
    with pytest.raises(ParameterError) as e:
        corrupt(digits, "sklearn-digits", 3, seed=0)
    assert "'name' parameter must be a corruption" in _one_line(e)
    with pytest.raises(ParameterError) as e:
        get_shift("mnist-c", "shifts")
    assert _one_line(e).startswith("The 'shifts' parameter")
    with pytest.raises(ParameterError) as e:
        ShiftNames()("shifts", ("contrast", "contrast"))
    assert _one_line(e).startswith("The 'shifts' parameter must be a non-empty list of distinct shift names")
    assert ShiftNames()("shifts", "contrast") == ("contrast",)
