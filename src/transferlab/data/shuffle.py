"""Block shuffle (Neyshabur, Sedghi, Zhang, NeurIPS 2020): cut every image into b x b blocks and
permute the blocks with one fixed permutation, the same for every image, train and test.

b = image size is the identity; b = 1 permutes single pixels, which destroys all spatial
structure a convolution could reuse while keeping the task learnable (the permutation is
fixed). The shuffle is a pixel index map applied to uint8 NCHW tensors on their device with
one gather for the whole batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import ParameterError


def check_block(block: int, size: int, name: str = "block") -> int:
    """`block` must be a positive divisor of the image size; else a one-line error naming it."""
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    if isinstance(block, bool) or not isinstance(block, int) or block not in divisors:
        raise ParameterError(f"The '{name}' parameter must be a positive divisor of the image size {size} "
                             f"({', '.join(map(str, divisors))}). Got {block!r} instead.")
    return block


def block_permutation(size: int, block: int, seed: int) -> torch.Tensor:
    """The fixed permutation of the (size / block)^2 blocks, drawn from `seed` (row-major block order)."""
    check_block(block, size)
    n = (size // block) ** 2
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def block_shuffle_index(size: int, block: int, seed: int) -> torch.Tensor:
    """Flat pixel index map: output pixel k of an image is input pixel index[k]."""
    perm = block_permutation(size, block, seed)
    nb = size // block
    rows = torch.arange(size)
    block_r, inner_r = (rows // block)[:, None], (rows % block)[:, None]      # (size, 1)
    block_c, inner_c = (rows // block)[None, :], (rows % block)[None, :]      # (1, size)
    source = perm[block_r * nb + block_c]                                      # source block of each pixel
    src_r = (source // nb) * block + inner_r
    src_c = (source % nb) * block + inner_c
    return (src_r * size + src_c).flatten()


@dataclass(frozen=True)
class BlockShuffle:
    """One fixed block shuffle of `size` x `size` images; call it on (N, C, H, W) tensors."""

    size: int
    block: int
    seed: int = 0
    index: torch.Tensor = field(init=False, repr=False, compare=False)
    inverse_index: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_block(self.block, self.size)
        index = block_shuffle_index(self.size, self.block, self.seed)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "inverse_index", torch.argsort(index))

    @property
    def is_identity(self) -> bool:
        return bool((self.index == torch.arange(self.size * self.size)).all())

    def _gather(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        if (h, w) != (self.size, self.size):
            raise ParameterError(f"The 'images' parameter must hold {self.size}x{self.size} images for this "
                                 f"block shuffle. Got {h}x{w} instead.")
        # One gather over the flattened pixels of the whole batch, on the images' device and dtype.
        return images.reshape(n, c, h * w).index_select(2, index.to(images.device)).reshape(n, c, h, w)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self._gather(images, self.index)

    def invert(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the shuffle: `invert(shuffle(x)) == x`."""
        return self._gather(images, self.inverse_index)


def block_shuffle(images: torch.Tensor, block: int, seed: int = 0) -> torch.Tensor:
    """Shuffle the b x b blocks of square (N, C, H, W) images with the permutation of `seed`."""
    return BlockShuffle(images.shape[-1], block, seed)(images)
