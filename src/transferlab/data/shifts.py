"""Distribution shifts of the digit target, picked by name: real data sets and seeded corruptions.

Every shift has a *kind* (LESSONS.md, finding 04): 'covered' when the pretraining source
varies the same factor (fonts; colours and photo backgrounds), 'unseen' when it never does
(another acquisition, noise, blur, low contrast). Linear probing beat fine-tuning out of
distribution only on covered shifts in trial runs, so a chapter reports both kinds.

Corruptions act on uint8 NCHW tensors on the device, in torch, and are a deterministic
function of (images, severity, seed) on a given device. Severities run 1-5 as in
ImageNet-C (Hendrycks & Dietterich, 2019); since every model standardises each image
first, `normalised_severity` states how much of a corruption survives that step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..cache import cache_root, cached_arrays
from ..config import Int, ParameterError
from .arrays import ArrayDataset
from .device import DeviceData, standardize

COVERED, UNSEEN = "covered", "unseen"
DIGITS = ("mnist", "sklearn-digits", "font-digits")   # ID targets that share the digit classes
SEVERITIES = (1, 2, 3, 4, 5)

# What each severity sets (index = severity - 1).
NOISE_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)   # of the 0-1 pixel range (ImageNet-C's values)
BLUR_SIGMA_PX = (0.6, 0.9, 1.2, 1.6, 2.0)       # at 32 px; MNIST strokes are 2-3 px wide
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)    # deviations from the image mean scaled by this (ImageNet-C)
PHOTO_MAX_LEVEL = (30, 60, 90, 120, 155)        # brightest background grey level; the source goes up to 155
PHOTO_BLEND = 0.5                              # crops blended toward their mean colour, as in the source
MIN_CONTRAST = 100.0                           # digit at least this many grey levels above the background


# ---------------------------------------------------------------- corruptions (uint8 NCHW -> uint8 NCHW)
def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(0.0, 255.0).round_().to(torch.uint8)


def gaussian_noise(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Additive i.i.d. Gaussian pixel noise, clipped to the pixel range."""
    sigma = 255.0 * NOISE_SIGMA[severity - 1]
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    return _to_uint8(images.float() + sigma * noise)


def gaussian_blur(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur (reflect padding); deterministic, the generator is unused."""
    sigma = BLUR_SIGMA_PX[severity - 1]
    radius = int(np.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    x = F.pad(images.float(), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return _to_uint8(x)


def contrast(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Deviations from each image's mean scaled down, then quantised to uint8 again.

    Per-image standardisation undoes the scaling exactly: what survives is the quantisation
    to fewer grey levels (see `normalised_severity`).
    """
    x = images.float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return _to_uint8(mean + CONTRAST_FACTOR[severity - 1] * (x - mean))


_PHOTOS: dict[str, list[torch.Tensor]] = {}


def _photo_bank(device: torch.device) -> list[torch.Tensor]:
    """The source's offline photos at every zoom (see data.glyphs), as float tensors on `device`."""
    from .glyphs import _photo_pyramid  # the same photos the source draws its backgrounds from

    key = str(device)
    if key not in _PHOTOS:
        _PHOTOS[key] = [torch.from_numpy(p).float().to(device) for p in _photo_pyramid()]
    return _PHOTOS[key]


def photo_background(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """The digit (the image's grey level as coverage) in a random colour on a darkened photo crop.

    Mirrors the source's style: a 64 px crop of one of its photos, blended toward its mean
    colour, scaled to at most PHOTO_MAX_LEVEL grey levels and area-downsampled 2x; the digit's
    colour is at least MIN_CONTRAST levels brighter than the brightest background pixel.
    """
    n, _, h, w = images.shape
    device = images.device
    bank = _photo_bank(device)
    level = PHOTO_MAX_LEVEL[severity - 1]
    uniform = torch.rand((n, 5), generator=generator, device=device).cpu().numpy()
    base = torch.rand((n, 3), generator=generator, device=device) * 255.0
    backgrounds = []
    for u in uniform:  # a slice per image: cheap next to any model's forward pass
        photo = bank[int(u[0] * len(bank))]
        y = int(u[1] * (photo.shape[1] - 2 * h + 1))
        x = int(u[2] * (photo.shape[2] - 2 * w + 1))
        crop = photo[:, y:y + 2 * h, x:x + 2 * w]
        crop = (1 - PHOTO_BLEND) * crop + PHOTO_BLEND * crop.mean(dim=(1, 2), keepdim=True)
        backgrounds.append(crop * (float(0.4 + 0.6 * u[3]) * level / crop.max().clamp(min=1.0)))
    background = F.avg_pool2d(torch.stack(backgrounds), 2)
    brightest = background.mean(dim=1).amax(dim=(1, 2))                       # (n,)
    low = (brightest + MIN_CONTRAST).clamp(max=255.0)
    target = low + torch.from_numpy(uniform[:, 4]).float().to(device) * (255.0 - low)  # glyph brightness
    toward_white = ((target - base.mean(1)) / (255.0 - base.mean(1))).clamp(min=0.0)
    colour = (base + toward_white[:, None] * (255.0 - base))[:, :, None, None]
    alpha = images.float().mean(dim=1, keepdim=True) / 255.0
    return _to_uint8(background + (colour - background) * alpha)


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Shift:
    """A named shift: a separate data set (`corruption` None) or a corruption of the ID test images,
    of the ID targets in `targets` (their classes; None: any target)."""

    name: str
    kind: str
    description: str
    corruption: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor] | None = None
    setting: Callable[[int], str] | None = None   # what a severity sets, in words
    max_size: int | None = None                   # images a fixed data set has
    targets: tuple | None = DIGITS
    dataset: str | None = None                    # its data set's name in data.TARGETS, if not `name`
    files: str | None = None                      # the real data set (data/real.py) whose files it reads

    def severity_text(self, severity: int) -> str:
        return "-" if self.setting is None else f"{severity}: {self.setting(severity)}"


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("font-digits", COVERED,
          "Digits rendered MNIST-like (light on black) in font files held out from pretraining; the source "
          "draws digits in other files, among them bold, oblique and italic styles of the held-out families "
          "(the split is by file, not by family)."),
    Shift("photo-background", COVERED,
          "The ID test digits in random colours on darkened photo crops, the style of the source images.",
          photo_background, lambda s: f"background up to {PHOTO_MAX_LEVEL[s - 1]} grey levels"),
    Shift("sklearn-digits", UNSEEN,
          "scikit-learn's 8x8 handwritten digits (another acquisition), upsampled into MNIST's 20 px box: "
          "blurry, blocky strokes the source never shows.", max_size=1797),
    Shift("gaussian-noise", UNSEEN, "The ID test images with additive Gaussian pixel noise.",
          gaussian_noise, lambda s: f"sigma = {NOISE_SIGMA[s - 1]} of the pixel range", targets=None),
    Shift("gaussian-blur", UNSEEN, "The ID test images blurred by a Gaussian kernel.",
          gaussian_blur, lambda s: f"sigma = {BLUR_SIGMA_PX[s - 1]} px", targets=None),
    Shift("contrast", UNSEEN, "The ID test images with their contrast scaled down and re-quantised to uint8.",
          contrast, lambda s: f"contrast x {CONTRAST_FACTOR[s - 1]}", targets=None),
    # Real photos (local files or TRANSFERLAB_ONLINE=1): covered by an ImageNet-pretrained hub source.
    Shift("stl10", COVERED,
          "STL-10's photos (96 px, resized to 32) of the nine classes CIFAR-10 shares: the CIFAR-10 -> STL-10 "
          "shift of Kumar et al. (2022).", max_size=11_700, targets=("cifar10",), dataset="stl10-as-cifar10",
          files="stl10"),
)}


def get_shift(name: str, parameter: str = "shift") -> Shift:
    """The registered shift `name`; anything else is a one-line error naming `parameter`."""
    if not isinstance(name, str) or name not in SHIFTS:
        raise ParameterError(f"The '{parameter}' parameter must be one of {list(SHIFTS)}. Got {name!r} instead.")
    return SHIFTS[name]


def check_severity(severity: int, parameter: str = "severity") -> int:
    return Int(SEVERITIES[0], SEVERITIES[-1])(parameter, severity)


@dataclass(frozen=True)
class ShiftNames:
    """Config check: a non-empty tuple of distinct registered shift names."""

    def __call__(self, name: str, value) -> tuple:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)) or len(value) == 0 or len(set(value)) != len(value):
            raise ParameterError(f"The '{name}' parameter must be a non-empty list of distinct shift names from "
                                 f"{list(SHIFTS)}. Got {value!r} instead.")
        return tuple(get_shift(v, name).name for v in value)


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """The corruption `name` at `severity` of uint8 NCHW `images`, deterministic in `seed`."""
    shift = get_shift(name, "name")
    if shift.corruption is None:
        raise ParameterError(f"The 'name' parameter must be a corruption, one of "
                             f"{[s.name for s in SHIFTS.values() if s.corruption]}. Got {name!r}, a data set, instead.")
    check_severity(severity)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return shift.corruption(images, severity, generator)


def shift_dataset(name: str, n: int, seed: int) -> ArrayDataset:
    """n images (stratified, cached) of a data-set shift such as 'sklearn-digits' or 'font-digits'."""
    from . import target_splits
    from .store import _pack, _unpack

    dataset = get_shift(name, "name").dataset or name
    path = cache_root() / "data" / f"{name}-shift{n}-seed{seed}.npz"
    return _unpack(cached_arrays(path, lambda: _pack(target_splits(dataset, {"test": n}, seed)["test"])))


def shift_data(name: str, id_test: DeviceData, severity: int, seed: int, n: int) -> DeviceData:
    """The OOD test set of a shift, on id_test's device: a corruption of the first n ID test images
    (a stratified prefix), or n images of a shifted data set."""
    shift = get_shift(name)
    if shift.corruption is not None:
        clean = id_test.images[:n]
        return DeviceData(corrupt(clean, name, severity, seed), id_test.labels[:n])
    return DeviceData.from_arrays(shift_dataset(name, n, seed), id_test.device)


def normalised_severity(clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    """RMS change of the pixels after per-image standardisation (what a model sees), in units
    of the image's own standard deviation: 0 = identical, sqrt(2) = an unrelated image."""
    diff = standardize(corrupted) - standardize(clean)
    return float(diff.pow(2).mean(dim=(1, 2, 3)).mean().sqrt())
