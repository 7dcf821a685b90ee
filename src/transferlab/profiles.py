"""The shared pretraining zoo per profile: findings that use these settings share checkpoints.

Keys are PretrainConfig paths; a finding prefixes them with its own field name
(see `pretrain_overrides`). Per-finding settings live in each finding's PROFILES.
"""
from __future__ import annotations

from typing import Any

ZOO: dict[str, dict[str, Any]] = {
    # Seconds: a model that barely learns; exercises every code path.
    "ci": {"source_size": 600, "source_test": 200, "model.arch": "resnet", "model.width": 16, "model.depth": 8,
           "train.epochs": 2, "train.batch_size": 64},
    # 2 CPU cores: ResNet-8 reaches ~99% glyph accuracy in 8 epochs of 10k images (~4 min a seed).
    "cpu": {"source_size": 10_000, "source_test": 2_000, "model.arch": "resnet", "model.width": 16,
            "model.depth": 8, "train.epochs": 8},
    # One GPU: a wider, deeper ResNet (ResNet-20, width 32) on 2.5x the data, 12 epochs (~1,200 steps of
    # 256). 25k images, not 50k: chapters 02, 03 and 05 fine-tune from every checkpoint of it, and the
    # study's 10-minute budget goes to those runs.
    "gpu": {"source_size": 25_000, "source_test": 5_000, "model.arch": "resnet", "model.width": 32,
            "model.depth": 20, "train.epochs": 12, "train.batch_size": 256, "early_checkpoints": (0.25, 0.5)},
}

# The zoo's ViT (finding 01 is about vision transformers): the conv-stem ViT of LESSONS.md,
# trained with AdamW (the PretrainConfig defaults) on the same glyph images as the ResNet.
ZOO_VIT: dict[str, dict[str, Any]] = {
    "ci": {"source_size": 600, "source_test": 200, "model.arch": "vit", "model.width": 32, "model.depth": 2,
           "model.heads": 2, "train.epochs": 2, "train.batch_size": 64},
    # 2 CPU cores: width 64, 4 blocks, 2 heads; ~1,600 steps of batch 128 (LESSONS: ~1,800 reach high accuracy).
    "cpu": {"source_size": 10_000, "source_test": 2_000, "model.arch": "vit", "model.width": 64, "model.depth": 4,
            "model.heads": 2, "train.epochs": 20},
    # One GPU: ViT-Tiny width, 8 blocks (LESSONS: depth >= 8 for a "moves to shallower layers" map).
    "gpu": {"source_size": 50_000, "source_test": 5_000, "model.arch": "vit", "model.width": 192, "model.depth": 8,
            "model.heads": 3, "train.epochs": 20, "train.batch_size": 256, "early_checkpoints": (0.5,)},
}


def pretrain_overrides(profile: str, prefix: str = "pretrain", zoo: dict[str, dict[str, Any]] = ZOO) -> dict[str, Any]:
    """The settings of `zoo` (ZOO or ZOO_VIT) for `profile`, as overrides of a finding config's `prefix` field."""
    return {f"{prefix}.{key}": value for key, value in zoo[profile].items()}
