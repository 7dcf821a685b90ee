import os

import numpy as np
import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test writes its cache into its own temporary folder, finds no hub weights but the
    ones it writes, runs offline whatever the environment allows, and trains with the default
    arithmetic (a test that wants the compiled or the CPU's bf16 loop sets its variable itself)."""
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRANSFERLAB_WEIGHTS", str(tmp_path / "weights"))
    for name in ("TRANSFERLAB_ONLINE", "TRANSFERLAB_COMPILE", "TRANSFERLAB_CPU_FAST"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def stripes():
    """A tiny learnable task: the class is the row of a bright horizontal stripe."""
    from transferlab.data.arrays import ArrayDataset

    rng = np.random.default_rng(0)
    n = 512
    labels = rng.integers(0, 8, n)
    images = rng.integers(0, 60, (n, 32, 32, 3))
    for i, y in enumerate(labels):
        images[i, 4 * y:4 * y + 3] += 150
    return ArrayDataset(images.clip(0, 255).astype(np.uint8), labels.astype(np.int64), tuple("abcdefgh"))


@pytest.fixture
def fast_path_on_cpu(monkeypatch):
    """The CUDA fast path (bf16 autocast, channels_last training, fused optimizer) on the CPU, so
    that its code runs in tests without a GPU (tests/test_fast_path.py)."""
    from transferlab import train

    monkeypatch.setattr(train, "FAST_PATH_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    assert train.fast_path(torch.device("cpu"))


@pytest.fixture
def fp32_fast_path_on_cpu(monkeypatch):
    """TRANSFERLAB_CPU_FAST=1 on a CPU without bf16 units (as on an AVX2 machine, whatever this one
    has): channels_last training and fused optimizers in fp32."""
    from transferlab import train

    monkeypatch.setattr(train, "native_bf16_cpu", lambda: False)
    monkeypatch.setenv("TRANSFERLAB_CPU_FAST", "1")
    assert train.fast_path(torch.device("cpu")) and not train.bf16_path(torch.device("cpu"))
