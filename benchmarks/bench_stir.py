"""STIR inversions of every block of one ViT: one batched optimisation over all layers
(`invert(batched=True)`, a single forward pass to the deepest block per step) vs one layer at
a time with the forward pass truncated at that layer (`batched=False`).

Both follow the same per-image steps (tests/test_stir.py checks they agree). The batched path
runs ~2x the FLOPs of the loop (every image set goes through every block) but launches one
set of kernels per step instead of one per layer: it should win on a GPU and may lose on a
CPU thread, so `invert(batched=None)` picks batched on CUDA and the loop elsewhere; the
speed-up here says whether that choice is right on this device.
"""
from __future__ import annotations

import torch

from transferlab.config import ModelConfig
from transferlab.metrics.stir import invert
from transferlab.models import create_model

from .common import case, compare


def run(quick: bool, device: str) -> dict:
    if device.startswith("cuda"):
        model_cfg, n, steps = ModelConfig(arch="vit", width=192, depth=8, heads=3), 256, 50
    else:
        model_cfg, n, steps = ModelConfig(arch="vit", width=64, depth=4, heads=2), 64, 20
    if quick:
        model_cfg, n, steps = ModelConfig(arch="vit", width=16, depth=2, heads=2), 8, 3
    torch.manual_seed(0)
    model = create_model(model_cfg, 10).to(device).eval()
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    layers = list(range(model_cfg.depth))

    def ours() -> None:
        invert(model, images, layers, steps=steps, batched=True)

    def baseline() -> None:
        invert(model, images, layers, steps=steps, batched=False)

    ours_m, base_m = compare(ours, baseline, device, repeats=1 if quick else 3)
    return {"cases": [case(f"vit_w{model_cfg.width}_d{model_cfg.depth}",
                           f"invert {len(layers)} blocks x {n} images x {steps} Adam steps: batched vs per-layer loop",
                           ours_m, base_m, items=n * len(layers) * steps, device=device,
                           target=3.0 if device.startswith("cuda") else None, layers=len(layers),
                           default_path="batched" if device.startswith("cuda") else "per-layer loop")],
            "notes": __doc__.strip()}
