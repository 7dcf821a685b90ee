"""All-pairs layer CKA: `minibatch_cka` (Gram matrices per batch, every layer pair from three
matrix products) vs a Python double loop of full-batch `linear_cka` over the layer pairs.

Both start from the same per-layer features of two randomly initialised conv-stem ViTs
(flattened patch tokens after every block, plus the pooled features), as chapter 03 uses
them. The two estimators differ (minibatch unbiased HSIC vs full-batch biased); the
benchmark times the computation, the tests of `metrics.cka` check the values.
"""
from __future__ import annotations

import torch

from transferlab.config import ModelConfig
from transferlab.metrics.cka import linear_cka, minibatch_cka
from transferlab.models import create_model

from .common import case, compare


def layer_features(seed: int, model_cfg: ModelConfig, images: torch.Tensor) -> list[torch.Tensor]:
    """Token features after every block and the pooled features of a random-init ViT."""
    torch.manual_seed(seed)
    model = create_model(model_cfg, 10).to(images.device).eval()
    with torch.no_grad():
        return [*model.forward_intermediates(images), model.forward_features(images)]


def run(quick: bool, device: str) -> dict:
    if device.startswith("cuda"):
        model_cfg, n, batch = ModelConfig(arch="vit", width=192, depth=12, heads=3), 2048, 256
    else:
        model_cfg, n, batch = ModelConfig(arch="vit", width=32, depth=4, heads=2), 256, 128
    if quick:
        model_cfg, n, batch = ModelConfig(arch="vit", width=16, depth=2, heads=2), 32, 16
    images = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    feats_a, feats_b = layer_features(0, model_cfg, images), layer_features(1, model_cfg, images)

    def ours() -> torch.Tensor:
        return minibatch_cka(feats_a, feats_b, batch)

    def baseline() -> torch.Tensor:
        return torch.tensor([[linear_cka(x, y) for y in feats_b] for x in feats_a])

    ours_m, base_m = compare(ours, baseline, device, repeats=1 if quick else 3, warmup=not quick)
    layers = len(feats_a)
    dims = sorted({f[0].numel() for f in feats_a})
    return {"cases": [case(f"vit_w{model_cfg.width}_d{model_cfg.depth}",
                           f"CKA of all {layers}x{layers} layer pairs of two models on {n} images",
                           ours_m, base_m, items=n, device=device, target=3.0, layers=layers,
                           feature_dims=dims, cka_batch=batch)],
            "notes": __doc__.strip()}
