"""Hyperparameters picked on validation data, by one rule in every chapter.

Learning rates and probe regularisation are chosen on a validation split, never on the test
split the claims are read from; a tie goes to the candidate that came first in its grid.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator, TypeVar

import torch
from torch import nn

from .config import TrainConfig
from .data.device import DeviceData
from .train import train

Candidate = TypeVar("Candidate")


def best_on_validation(candidates: Iterable[Candidate], val_acc: Callable[[Candidate], float]) -> Candidate:
    """The candidate with the highest validation accuracy, the earliest on a tie."""
    return max(candidates, key=val_acc)


def finetune_each_lr(start: Callable[[], nn.Module], data: DeviceData, cfg: TrainConfig, lrs: Iterable[float], *,
                     seed: int, freeze_bn: bool = False, desc: str) -> Iterator[tuple[float, nn.Module]]:
    """Train a fresh `start()` once per learning rate, each from the same seed (the seed is set
    before `start()`, so a new head is initialised the same way for every lr): runs differ only in lr."""
    for lr in lrs:
        torch.manual_seed(seed)
        model = start()
        train(model, data, dataclasses.replace(cfg, lr=lr), seed=seed, freeze_bn=freeze_bn, desc=f"{desc} lr {lr:g}")
        yield lr, model
