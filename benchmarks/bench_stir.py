"""STIR inversions of every layer of one model: one batched optimisation over all layers
(`invert(batched=True)`: one forward pass per step, each layer's image set leaving the batch once
its layer is read) vs one layer at a time with the forward pass truncated at that layer
(`batched=False`).

Both run the same FLOPs and follow the same per-image steps (tests/test_stir.py checks they
agree). The batched path launches one set of kernels per step instead of one per layer, on
batches up to layers x images large: it should win on a GPU; on a CPU thread the loop's small
batches stay in the cache. `invert(batched=None)` picks batched on CUDA and the loop elsewhere;
the speed-up here says whether that choice is right on this device. Cases: chapter 01's ViT and
the ResNet that chapter 05 inverts, at the sizes of the profile this device runs.
"""
from __future__ import annotations

import torch

from transferlab.config import ModelConfig
from transferlab.metrics.stir import invert, num_layers
from transferlab.models import create_model

from .common import case, compare


def _cases(device: str, quick: bool) -> list[tuple[ModelConfig, int, int]]:
    """(model, images, Adam steps) per case."""
    if quick:
        return [(ModelConfig(arch="vit", width=16, depth=2, heads=2), 8, 3)]
    if device.startswith("cuda"):
        return [(ModelConfig(arch="vit", width=192, depth=8, heads=3), 256, 50),
                (ModelConfig(arch="resnet", width=32, depth=20), 256, 50)]
    return [(ModelConfig(arch="vit", width=64, depth=4, heads=2), 64, 20),
            (ModelConfig(arch="resnet", width=16, depth=8), 64, 20)]


def stir_case(model_cfg: ModelConfig, n: int, steps: int, device: str, quick: bool) -> dict:
    torch.manual_seed(0)
    model = create_model(model_cfg, 10).to(device).eval()
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    layers = list(range(num_layers(model)))

    def ours() -> None:
        invert(model, images, layers, steps=steps, batched=True)

    def baseline() -> None:
        invert(model, images, layers, steps=steps, batched=False)

    ours_m, base_m = compare(ours, baseline, device, repeats=1 if quick else 3, warmup=not quick)
    return case(f"{model_cfg.arch}_w{model_cfg.width}_d{model_cfg.depth}",
                f"invert {len(layers)} layers x {n} images x {steps} Adam steps: batched vs per-layer loop",
                ours_m, base_m, items=n * len(layers) * steps, device=device,
                target=3.0 if device.startswith("cuda") else None, layers=len(layers),
                default_path="batched" if device.startswith("cuda") else "per-layer loop")


def run(quick: bool, device: str) -> dict:
    return {"cases": [stir_case(*spec, device=device, quick=quick) for spec in _cases(device, quick)],
            "notes": __doc__.strip()}
