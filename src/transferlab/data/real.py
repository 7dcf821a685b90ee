"""Real image data sets as targets: CIFAR-10 and STL-10 through torchvision's own loaders.

The files are read from $TRANSFERLAB_DATA (default ~/.cache/transferlab-data), laid out as
torchvision's `download=True` leaves it; torchvision downloads them there only when the user
sets TRANSFERLAB_ONLINE=1 (offline policy). Images become the study's 32 px uint8 RGB (STL-10
is resized from 96).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import ONLINE_ENV, ParameterError, online
from .arrays import ArrayDataset

DATA_ENV = "TRANSFERLAB_DATA"
SIZE = 32


@dataclass(frozen=True)
class RealDataset:
    title: str
    loader: str          # the torchvision.datasets class
    folder: str          # its files' folder under the data root
    splits: tuple        # constructor keyword arguments of the parts pooled into one data set


REAL: dict[str, RealDataset] = {
    "cifar10": RealDataset("CIFAR-10", "CIFAR10", "cifar-10-batches-py", ({"train": True}, {"train": False})),
    "stl10": RealDataset("STL-10", "STL10", "stl10_binary", ({"split": "train"}, {"split": "test"})),
}


def data_root() -> Path:
    return Path(os.environ.get(DATA_ENV, Path.home() / ".cache" / "transferlab-data"))


def _missing(name: str, parameter: str, problem: str) -> ParameterError:
    spec = REAL[name]
    return ParameterError(f"The '{parameter}' parameter {name!r} needs the {spec.title} files in "
                          f"{data_root() / spec.folder} ({problem}); set ${DATA_ENV} to the folder where "
                          f"torchvision.datasets.{spec.loader}(root, download=True) put them, or set {ONLINE_ENV}=1 to "
                          f"let torchvision download them.")


def available(name: str) -> bool:
    """Whether a real data set can be read: its folder is here, or torchvision may download it."""
    return online() or (data_root() / REAL[name].folder).is_dir()


def check_available(name: str, parameter: str = "target.name") -> str:
    """Fail at config time, in one line, when a real data set's folder is absent and may not download."""
    if not available(name):
        raise _missing(name, parameter, "the folder does not exist")
    return name


def load_real(name: str) -> ArrayDataset:
    """All images of a real data set (its train and test parts pooled), 32 px uint8 NHWC."""
    import torchvision.datasets

    spec = REAL[name]
    check_available(name)
    loader = getattr(torchvision.datasets, spec.loader)
    try:
        parts = [loader(str(data_root()), download=online(), **split) for split in spec.splits]
    except (RuntimeError, OSError, ValueError) as err:  # torchvision: "not found or corrupted"
        raise _missing(name, "target.name", f"unreadable: {err}") from None
    images = np.concatenate([_images(part.data) for part in parts])
    labels = np.concatenate([np.asarray(_labels(part), dtype=np.int64) for part in parts])
    return ArrayDataset(images, labels, tuple(parts[0].classes))


def _labels(part) -> list:
    return part.targets if hasattr(part, "targets") else part.labels


def _images(data: np.ndarray) -> np.ndarray:
    """torchvision's arrays (CIFAR: NHWC; STL: NCHW at 96 px) as 32 px NHWC uint8."""
    if data.shape[-1] != 3:
        data = data.transpose(0, 2, 3, 1)
    if data.shape[1] == SIZE:
        return np.ascontiguousarray(data, dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
                     for im in data])


# STL-10's classes as CIFAR-10 indices; 'monkey' has no CIFAR-10 class (and 'frog' no STL-10 one).
STL10_TO_CIFAR10 = {0: 0, 1: 2, 2: 1, 3: 3, 4: 4, 5: 5, 6: 7, 8: 8, 9: 9}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def stl10_as_cifar10() -> ArrayDataset:
    """STL-10's images of the nine classes CIFAR-10 shares, labelled with CIFAR-10's indices: the
    CIFAR-10 -> STL-10 shift of Kumar et al. (2022)."""
    stl = load_real("stl10")
    keep = np.isin(stl.labels, list(STL10_TO_CIFAR10))
    labels = np.array([STL10_TO_CIFAR10[int(y)] for y in stl.labels[keep]], dtype=np.int64)
    return ArrayDataset(stl.images[keep], labels, CIFAR10_CLASSES)
