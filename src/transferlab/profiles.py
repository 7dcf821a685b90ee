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
    # One GPU: a wider, deeper ResNet and more data.
    "gpu": {"source_size": 50_000, "source_test": 5_000, "model.arch": "resnet", "model.width": 32,
            "model.depth": 20, "train.epochs": 12, "train.batch_size": 256, "early_checkpoints": (0.25, 0.5)},
}


def pretrain_overrides(profile: str, prefix: str = "pretrain") -> dict[str, Any]:
    """The zoo settings of `profile`, as overrides of a finding config's `prefix` field."""
    return {f"{prefix}.{key}": value for key, value in ZOO[profile].items()}
