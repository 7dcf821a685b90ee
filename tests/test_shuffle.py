"""Block shuffle: a fixed bijection of pixels, identical for every image, undone by its inverse."""
import pytest
import torch

from transferlab.config import ParameterError
from transferlab.data.shuffle import BlockShuffle, block_permutation, block_shuffle, block_shuffle_index

SIZES = (32, 16, 8, 4, 2, 1)


@pytest.mark.parametrize("block", SIZES)
def test_index_is_a_bijection(block):
    index = block_shuffle_index(32, block, seed=3)
    assert sorted(index.tolist()) == list(range(32 * 32))


@pytest.mark.parametrize("block", SIZES[1:])
def test_blocks_move_whole(block):
    """Every output block is one input block, copied intact."""
    shuffle = BlockShuffle(32, block, seed=1)
    image = torch.arange(32 * 32).reshape(1, 1, 32, 32)
    out = shuffle(image)[0, 0]
    perm = block_permutation(32, block, seed=1)
    nb = 32 // block
    for k in range(nb * nb):
        src = perm[k].item()
        got = out[(k // nb) * block:(k // nb + 1) * block, (k % nb) * block:(k % nb + 1) * block]
        want = image[0, 0, (src // nb) * block:(src // nb + 1) * block, (src % nb) * block:(src % nb + 1) * block]
        assert torch.equal(got, want)


def test_same_permutation_for_every_image_and_channel():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    shuffle = BlockShuffle(32, 4, seed=7)
    out = shuffle(images)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    flat_in, flat_out = images.reshape(5, 3, -1), out.reshape(5, 3, -1)
    assert torch.equal(flat_out, flat_in[:, :, shuffle.index])
    # shuffling images one at a time gives the same result as the batch (same permutation)
    assert torch.equal(torch.cat([shuffle(images[i:i + 1]) for i in range(5)]), out)
    # a second object with the same seed is the same shuffle (train and test agree)
    assert torch.equal(BlockShuffle(32, 4, seed=7)(images), out)
    assert not torch.equal(BlockShuffle(32, 4, seed=8)(images), out)


def test_full_block_is_identity_and_inverse_restores():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(block_shuffle(images, 32), images)
    assert BlockShuffle(32, 32).is_identity
    for block in SIZES:
        shuffle = BlockShuffle(32, block, seed=2)
        assert torch.equal(shuffle.invert(shuffle(images)), images)
    assert not torch.equal(block_shuffle(images, 1, seed=2), images)


@pytest.mark.parametrize("block", [0, -4, 5, 64, 2.0, "8"])
def test_impossible_block_is_a_clear_error(block):
    with pytest.raises(ParameterError) as err:
        BlockShuffle(32, block)
    message = str(err.value)
    assert "'block'" in message and "\n" not in message and repr(block) in message


def test_wrong_image_size_is_a_clear_error():
    with pytest.raises(ParameterError, match="'images'"):
        BlockShuffle(32, 4)(torch.zeros(1, 3, 28, 28, dtype=torch.uint8))
