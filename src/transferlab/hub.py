"""Pretrained weights from timm as a pretraining source: `pretrain.source='timm:<model name>'`.

Nothing downloads by default (offline policy): the weights come from a local file
`$TRANSFERLAB_WEIGHTS/<model name>.safetensors` (or `.pth` / `.bin`, default folder
~/.cache/transferlab-weights), loaded by timm's own pretrained-weights code (its checkpoint
filters, classifier handling). With `TRANSFERLAB_ONLINE=1` timm may fetch them from its hub.

A hub model takes the study's inputs (32 px, standardised per image) resized to the input size
its weights were trained at, and exposes the API of `models.py`, so a finding treats it like a
zoo run with a single pretrained checkpoint.
"""
from __future__ import annotations

import difflib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from .config import ONLINE_ENV, SOURCE_NAMES, ParameterError, online

PREFIX = "timm:"
WEIGHTS_ENV = "TRANSFERLAB_WEIGHTS"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin")
CHECKPOINT = "hub"   # the name of a hub run's one pretrained checkpoint ('ep0' is a random init)


def weights_root() -> Path:
    return Path(os.environ.get(WEIGHTS_ENV, Path.home() / ".cache" / "transferlab-weights"))


def is_hub(source: str) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def model_name(source: str) -> str:
    return source[len(PREFIX):]


def local_weights(name: str) -> Path | None:
    """The local weights file of timm model `name` (with its pretrained tag, if any), if present."""
    return next((p for p in (weights_root() / f"{name}{s}" for s in WEIGHT_SUFFIXES) if p.is_file()), None)


def weights_available(name: str) -> bool:
    """Whether timm model `name`'s weights can be loaded: a local file, or timm may download them."""
    return online() or local_weights(name) is not None


def check_source(parameter: str, value: str) -> str:
    """Config check of a `timm:` source: a known timm model whose weights are here (or may download)."""
    import timm

    name = model_name(value)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3)
        hint = f" Close timm names: {close}." if close else ""
        raise ParameterError(f"The '{parameter}' parameter {value!r} names no timm model; use timm:<name> with a "
                             f"name from timm.list_models().{hint}")
    if not weights_available(name):
        raise ParameterError(f"The '{parameter}' parameter {value!r} needs timm hub weights: put {name}.safetensors "
                             f"(or .pth) in {weights_root()} (${WEIGHTS_ENV}), or set {ONLINE_ENV}=1 to let timm "
                             f"download them.")
    return value


class HubModel(nn.Module):
    """A timm model behind the study's model API: pooled `forward_features`, `get_classifier`,
    `reset_classifier`; inputs are resized to the size the weights were trained at."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.input_size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224))[1:])
        self.num_features = model.num_features

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.input_size:
            return x
        return F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(self._resize(x)), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def reset_classifier(self, num_classes: int) -> None:
        device = next(self.model.parameters()).device
        self.model.reset_classifier(num_classes)
        self.model.get_classifier().to(device)


def create_hub_model(source: str, pretrained: bool) -> HubModel:
    """The timm model of `source`, with its pretrained weights (local file first) or a random init."""
    import timm

    name = model_name(source)
    if not pretrained:
        return HubModel(timm.create_model(name, pretrained=False))
    path = local_weights(name)
    overlay = {"file": str(path), "source": None, "hf_hub_id": None, "url": None} if path else None
    try:
        return HubModel(timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay))
    except (RuntimeError, OSError, KeyError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        # unreadable, truncated or mismatched weights, or (online) a failed download
        where = str(path) if path else "timm's hub"
        raise ParameterError(f"The 'pretrain.source' parameter {source!r} could not load its weights from "
                             f"{where}: {str(err).splitlines()[0][:200]}") from None


@dataclass(frozen=True)
class HubRun:
    """A hub source in the shape of a zoo run: checkpoint 'ep0' (timm's random init for this seed)
    and 'hub' (the pretrained weights). Its source accuracy is unknown (NaN): the publisher's."""

    source: str
    seed: int

    def checkpoints(self) -> list[dict]:
        nan = float("nan")
        return [{"name": "ep0", "epoch": 0.0, "source_acc": nan}, {"name": CHECKPOINT, "epoch": 1.0, "source_acc": nan}]

    def load(self, name: str, device: str | torch.device = "cpu") -> HubModel:
        if name not in ("ep0", CHECKPOINT):
            raise ParameterError(f"The 'checkpoint' parameter must be 'ep0' or {CHECKPOINT!r} for hub source "
                                 f"{self.source!r}. Got {name!r} instead.")
        if name == "ep0":
            torch.manual_seed(self.seed)
        return create_hub_model(self.source, pretrained=name == CHECKPOINT).to(device)


def refuse_hub_source(source: str, finding: str, why: str) -> None:
    """One-line error for a finding that cannot use a hub source (e.g. it needs every epoch's checkpoint)."""
    if is_hub(source):
        raise ParameterError(f"The 'pretrain.source' parameter {source!r} is a hub model, which {finding} cannot "
                             f"use: {why}; use one of {list(SOURCE_NAMES)}.")
