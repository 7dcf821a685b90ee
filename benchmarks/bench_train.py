"""Training throughput: `transferlab.train.train` vs a naive PyTorch loop, same model and data.

The naive loop is what a tutorial writes: a torch DataLoader over PIL images with
torchvision transforms (random crop, ToTensor, Normalize), fp32, the default AdamW, and a
`.item()` after every step. Ours keeps uint8 images on the device, augments and
standardises there, reads the loss once per epoch, and on the fast path (CUDA, or a CPU with
TRANSFERLAB_CPU_FAST=1, whose results get a device name of their own) uses channels_last and a
fused optimizer, and bf16 autocast where the device has bf16 units; its time includes the
precise-BN pass at the end of `train`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from transferlab.config import ModelConfig, TrainConfig
from transferlab.data.arrays import ArrayDataset
from transferlab.data.device import DeviceData
from transferlab.models import create_model
from transferlab.train import autocast, train

from .common import case, compare, count_flops

NUM_CLASSES = 10


@dataclass(frozen=True)
class Spec:
    name: str
    model: ModelConfig
    images: int        # per timed run (one epoch)
    batch_size: int
    lr: float = 2e-3


def specs(device: str, quick: bool) -> list[Spec]:
    """ResNet-8 and a conv-stem ViT (patch 4 at 32 px): ViT-Tiny on CUDA, a CPU-sized one on CPU."""
    resnet = ModelConfig(arch="resnet", width=16, depth=8)
    if device.startswith("cuda"):
        vit = ModelConfig(arch="vit", width=192, depth=12, heads=3)
        n, bs = (2048, 512) if quick else (32_768, 512)
        return [Spec("resnet8", resnet, n, bs), Spec("vit_tiny", vit, n, bs, lr=1e-3)]
    vit = ModelConfig(arch="vit", width=64, depth=4, heads=2)
    n, bs = (128, 64) if quick else (3072, 128)
    return [Spec("resnet8", resnet, n, bs), Spec("vit_w64_d4", vit, n, bs)]


def synthetic_images(n: int, seed: int = 0) -> ArrayDataset:
    """Random uint8 NHWC images and labels: throughput does not depend on the content."""
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                        rng.integers(0, NUM_CLASSES, n).astype(np.int64), tuple(map(str, range(NUM_CLASSES))))


class PILImages(Dataset):
    """Like torchvision's CIFAR10: uint8 arrays in memory, a PIL image and a transform per item."""

    def __init__(self, ds: ArrayDataset) -> None:
        self.images, self.labels = ds.images, ds.labels
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=2), transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def training_inputs(spec: Spec, device: str) -> tuple[ArrayDataset, nn.Module, DeviceData, TrainConfig]:
    """The case's synthetic images (host and device copies), its freshly seeded model (on the host)
    and one epoch's training configuration."""
    ds = synthetic_images(spec.images)
    torch.manual_seed(0)
    model = create_model(spec.model, NUM_CLASSES)
    return ds, model, DeviceData.from_arrays(ds, device), TrainConfig(epochs=1, batch_size=spec.batch_size, lr=spec.lr)


def naive_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                device: str) -> list[float]:
    """The baseline: host-side data, fp32, a host sync (`.item()`) every step."""
    model.train()
    losses = []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def step_flops(model: torch.nn.Module, spec: Spec, device: str) -> int:
    """FLOPs of one training step (forward + backward) of a batch, as our loop runs it."""
    x = torch.randn(spec.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, NUM_CLASSES, (spec.batch_size,), device=device)

    def step() -> None:
        with autocast(torch.device(device)):
            loss = F.cross_entropy(model(x), y)
        loss.backward()

    flops = count_flops(step)
    model.zero_grad(set_to_none=True)
    return flops


def train_case(spec: Spec, device: str, quick: bool) -> dict:
    """Time one epoch of each loop on the same initial weights and images."""
    ds, base_model, data, cfg = training_inputs(spec, device)
    ours_model = copy.deepcopy(base_model).to(device)
    naive_model = copy.deepcopy(base_model).to(device)
    workers = 4 if device.startswith("cuda") else 0   # a CPU run has no spare cores for workers
    loader = DataLoader(PILImages(ds), batch_size=spec.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, pin_memory=device.startswith("cuda"))
    naive_opt = torch.optim.AdamW(naive_model.parameters(), lr=spec.lr, weight_decay=0.05)
    seeds = iter(range(1, 1000))

    def ours() -> None:
        train(ours_model, data, cfg, seed=next(seeds))

    def baseline() -> None:
        naive_epoch(naive_model, loader, naive_opt, device)

    if not quick:  # warm-up: kernels, allocator, torch.compile when switched on
        ours()
        baseline()
    ours_m, base_m = compare(ours, baseline, device, repeats=1 if quick else 3)
    steps = spec.images // spec.batch_size
    flops = step_flops(ours_model, spec, device) * steps if device.startswith("cuda") else None
    return case(spec.name, "one epoch of training", ours_m, base_m, items=steps * spec.batch_size, flops=flops,
                device=device, target=10.0 if device.startswith("cuda") else 2.0, model=vars(spec.model),
                **({"target_mfu": 0.25} if device.startswith("cuda") and spec.model.arch == "vit" else {}),
                params=sum(p.numel() for p in base_model.parameters()), batch_size=spec.batch_size,
                steps_per_run=steps, naive_num_workers=workers)


def run(quick: bool, device: str) -> dict:
    return {"cases": [train_case(spec, device, quick) for spec in specs(device, quick)], "notes": __doc__.strip()}
