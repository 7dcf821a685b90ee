"""Images live on the device as uint8; normalisation and augmentation happen there too.

Moving the whole (small) data set once avoids a DataLoader, host-side transforms and a
host-to-device copy every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from .arrays import ArrayDataset


@dataclass
class DeviceData:
    """uint8 NCHW images and int64 labels, resident on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_arrays(cls, ds: ArrayDataset, device: str | torch.device) -> "DeviceData":
        images = torch.from_numpy(ds.images).permute(0, 3, 1, 2).contiguous()
        return cls(images.to(device), torch.from_numpy(ds.labels).long().to(device))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def cat(self, other: "DeviceData") -> "DeviceData":
        return DeviceData(torch.cat([self.images, other.images]), torch.cat([self.labels, other.labels]))


def standardize(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float with zero mean, unit variance per image (removes contrast/brightness shifts)."""
    return standardize_unit(images.float().div_(255.0))


def standardize_unit(x: torch.Tensor) -> torch.Tensor:
    """`standardize` for float images in [0, 1]; differentiable, for optimising the images themselves."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (std + 1e-3)


def random_translate(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image by up to `max_shift` px (zero-padded), batched with one gather."""
    n, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    shifts = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator, device=images.device)
    rows = (torch.arange(h, device=images.device)[None, :] + shifts[:, :1])  # (n, h)
    cols = (torch.arange(w, device=images.device)[None, :] + shifts[:, 1:])  # (n, w)
    index_r = rows[:, None, :, None].expand(n, images.shape[1], h, padded.shape[-1])
    out = padded.gather(2, index_r)
    index_c = cols[:, None, None, :].expand(n, images.shape[1], h, w)
    return out.gather(3, index_c)


def batches(data: DeviceData, batch_size: int, *, shuffle: bool,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (standardised float images, labels) batches without leaving the device."""
    n = len(data)
    order = torch.randperm(n, generator=generator, device=data.device) if shuffle else None
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size] if shuffle else slice(start, start + batch_size)
        yield standardize(data.images[index]), data.labels[index]


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)
