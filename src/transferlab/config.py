"""Validated, hashable study configuration: dataclasses, parameter checks, profiles.

Every user-facing value is checked before any compute, and errors follow
scikit-learn's shape: which parameter, what is allowed, what was given.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable


class ParameterError(ValueError):
    """A user-facing parameter has a value outside what is allowed."""


# ---------------------------------------------------------------- checks
@dataclass(frozen=True)
class Int:
    lo: int
    hi: float = math.inf

    def __call__(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise ParameterError(f"The '{name}' parameter must be an int in the range "
                                 f"[{self.lo}, {self.hi}]. Got {value!r} instead.")
        return value


@dataclass(frozen=True)
class Float:
    lo: float
    hi: float = math.inf
    lo_open: bool = False

    def __call__(self, name: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (self.lo < value if self.lo_open else self.lo <= value) and value <= self.hi
        if not ok:
            left = "(" if self.lo_open else "["
            raise ParameterError(f"The '{name}' parameter must be a float in the range "
                                 f"{left}{self.lo}, {self.hi}]. Got {value!r} instead.")
        return float(value)


@dataclass(frozen=True)
class Choice:
    options: tuple
    also: str = ""   # other accepted forms, for the message (e.g. " or 'timm:<model name>'")

    def __call__(self, name: str, value: Any) -> Any:
        # The type must match too: 1 == True, yet `augment=1` would hash to a config of its own and
        # train a second copy of the same pretraining run.
        if not any(type(value) is type(option) and value == option for option in self.options):
            raise ParameterError(f"The '{name}' parameter must be one of {list(self.options)}{self.also}. "
                                 f"Got {value!r} instead.")
        return value


@dataclass(frozen=True)
class Floats:
    """A non-empty tuple of floats, each checked by `item`."""

    item: Float

    def __call__(self, name: str, value: Any) -> tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, (list, tuple)) or len(value) == 0:
            raise ParameterError(f"The '{name}' parameter must be a non-empty list of floats. "
                                 f"Got {value!r} instead.")
        return tuple(self.item(name, v) for v in value)


@dataclass(frozen=True)
class Choices:
    """A non-empty tuple of distinct values, each checked by `item` (a Choice)."""

    item: Choice

    def __call__(self, name: str, value: Any) -> tuple:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)) or len(value) == 0 or len(set(value)) != len(value):
            raise ParameterError(f"The '{name}' parameter must be a non-empty list of distinct values from "
                                 f"{list(self.item.options)}. Got {value!r} instead.")
        return tuple(self.item(name, v) for v in value)


@dataclass(frozen=True)
class Ints:
    """A tuple of ints, each checked by `item`; `empty_ok` where () means 'all' (a finding says
    so), `distinct` where a repeated value is an error."""

    item: Int
    empty_ok: bool = False
    distinct: bool = False

    def __call__(self, name: str, value: Any) -> tuple:
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value,)
        ok = isinstance(value, (list, tuple)) and (self.empty_ok or len(value) > 0)
        if not ok or (self.distinct and len(set(value)) != len(value)):
            raise ParameterError(f"The '{name}' parameter must be a {'' if self.empty_ok else 'non-empty '}list of "
                                 f"{'distinct ' if self.distinct else ''}ints. Got {value!r} instead.")
        return tuple(self.item(name, v) for v in value)


ONLINE_ENV = "TRANSFERLAB_ONLINE"


def online() -> bool:
    """Whether the user allowed downloads (hub weights, torchvision data sets) for this process:
    only with TRANSFERLAB_ONLINE=1; every profile runs offline otherwise."""
    return os.environ.get(ONLINE_ENV, "") == "1"


# Values that name downloads (real data sets) where only offline data is allowed: rejected with
# what they need and where they can be used instead (README, "Offline policy").
DOWNLOADS = {"cifar10": "the CIFAR-10 data set files", "cifar100": "the CIFAR-100 data set files",
             "stl10": "the STL-10 data set files", "imagenet": "the ImageNet data set files"}


@dataclass(frozen=True)
class OfflineChoice(Choice):
    """A Choice whose rejected download names (see DOWNLOADS) say what they would need."""

    def __call__(self, name: str, value: Any) -> Any:
        if value not in self.options and isinstance(value, str) and value in DOWNLOADS:
            raise ParameterError(f"The '{name}' parameter {value!r} needs {DOWNLOADS[value]}, which the study "
                                 f"does not load here; use one of {list(self.options)}.")
        return super().__call__(name, value)


@dataclass(frozen=True)
class SourceName(OfflineChoice):
    """A pretraining source: a rendered one, or 'timm:<model name>' (hub weights, see hub.py)."""

    def __call__(self, name: str, value: Any) -> Any:
        from . import hub

        return hub.check_source(name, value) if hub.is_hub(value) else super().__call__(name, value)


@dataclass(frozen=True)
class TargetName(OfflineChoice):
    """A target name; a real data set's local files must be there (data/real.py), checked at once."""

    def __call__(self, name: str, value: Any) -> Any:
        from .data.real import REAL, check_available

        value = super().__call__(name, value)
        return check_available(value, name) if value in REAL else value


def param(default: Any, check: Callable[[str, Any], Any]) -> Any:
    """A dataclass field whose value is validated by `check` in `validate`."""
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"check": check})
    return field(default=default, metadata={"check": check})


# ---------------------------------------------------------------- config blocks
SOURCE_NAMES = ("glyphs", "glyphs+digits")
TARGET_NAMES = ("mnist", "sklearn-digits", "font-digits", "cifar10", "stl10")
ARCH_NAMES = ("resnet", "vit")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = param("resnet", Choice(ARCH_NAMES))
    width: int = param(16, Int(4, 4096))   # ResNet: first-stage channels; ViT: embedding width
    depth: int = param(8, Int(1, 200))     # ResNet: 6n+2 layers; ViT: transformer blocks
    heads: int = param(2, Int(1, 64))      # ViT only


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = param(3, Int(1, 10_000))
    batch_size: int = param(128, Int(1, 65_536))
    optimizer: str = param("adamw", Choice(("adamw", "sgd")))
    lr: float = param(2e-3, Float(0.0, 10.0, lo_open=True))
    weight_decay: float = param(0.05, Float(0.0, 1.0))
    label_smoothing: float = param(0.1, Float(0.0, 0.5))
    warmup_frac: float = param(0.08, Float(0.0, 0.5))
    augment: bool = param(True, Choice((True, False)))   # random translation by up to 2 px


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that identifies a pretraining run of the zoo (plus its seed)."""

    source: str = param("glyphs", SourceName(SOURCE_NAMES, also=" or 'timm:<model name>'"))
    source_size: int = param(20_000, Int(100, 10_000_000))
    source_test: int = param(2_000, Int(50, 1_000_000))
    data_seed: int = param(0, Int(0, 2**31 - 1))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Extra checkpoints inside epoch 1, as fractions of it (the paper saves a few there).
    early_checkpoints: tuple = param((0.5,), Floats(Float(0.0, 1.0, lo_open=True)))


@dataclass(frozen=True)
class TargetConfig:
    name: str = param("mnist", TargetName(TARGET_NAMES))
    train: int = param(1_000, Int(10, 1_000_000))
    val: int = param(500, Int(10, 1_000_000))
    test: int = param(3_500, Int(10, 1_000_000))
    split_seed: int = param(0, Int(0, 2**31 - 1))


# Images in the bundled fixed targets (data/digits.py); rendered targets draw as many as asked, and
# the real data sets' files are counted when they load.
BUNDLED_TARGET_IMAGES = {"mnist": 5_000, "sklearn-digits": 1_797}


def check_target_size(target: TargetConfig, prefix: str = "") -> None:
    """Refuse splits that together ask a bundled target for more images than it has, before any compute."""
    available, asked = BUNDLED_TARGET_IMAGES.get(target.name), target.train + target.val + target.test
    if available is not None and asked > available:
        raise ParameterError(f"The '{prefix}train', '{prefix}val' and '{prefix}test' parameters must ask for at most "
                             f"{available} images together (the {target.name!r} target has {available}). Got "
                             f"{target.train} + {target.val} + {target.test} = {asked} instead.")


# ---------------------------------------------------------------- validation, overrides, hashing
def validate(cfg: Any, prefix: str = "") -> Any:
    """Check every field (recursively) and return the config with normalised values."""
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = validate(value, f"{prefix}{f.name}.")
        elif "check" in f.metadata:
            changes[f.name] = f.metadata["check"](f"{prefix}{f.name}", value)
    cfg = dataclasses.replace(cfg, **changes)
    if isinstance(cfg, TargetConfig):
        check_target_size(cfg, prefix)
    return cfg


def field_paths(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted parameter names of a config, e.g. 'pretrain.train.epochs'."""
    paths = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            paths += field_paths(value, f"{prefix}{f.name}.")
        else:
            paths.append(f"{prefix}{f.name}")
    return paths


def apply_overrides(cfg: Any, overrides: dict[str, Any], short_names: tuple[str, ...] = (),
                    unlisted: str | None = None) -> Any:
    """Replace dotted-path fields; an unknown name is an error listing the names a user may give:
    `short_names` first, then the dotted ones, less those containing `unlisted` (names the caller
    refuses with a message of its own)."""
    allowed = field_paths(cfg)
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in allowed:
            listed = [*short_names, *(p for p in allowed if not (unlisted and unlisted in p))]
            close = [p for p in listed if p.endswith(f".{key}")] or difflib.get_close_matches(key, listed, n=1)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ParameterError(f"Unknown parameter {key!r}.{hint} Allowed parameters: {listed}.")
        cfg = _replace_path(cfg, key.split("."), value)
    return cfg


def _replace_path(cfg: Any, path: list[str], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(cfg, **{path[0]: value})
    inner = getattr(cfg, path[0])
    return dataclasses.replace(cfg, **{path[0]: _replace_path(inner, path[1:], value)})


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg: Any) -> str:
    """Stable short hash of a config's resolved values (identical values, identical hash)."""
    blob = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


PROFILE_NAMES = ("ci", "cpu", "gpu", "paper")


def check_profile(profile: str) -> str:
    return Choice(PROFILE_NAMES)("profile", profile)


def check_device(device: str) -> str:
    """'auto' picks CUDA when present; asking for CUDA without one is a clear error."""
    import torch

    Choice(("auto", "cpu", "cuda"))("device", device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("The 'device' parameter is 'cuda' but no CUDA device is available; "
                             "use 'cpu' or 'auto'.")
    return device


def missing_downloads(overrides: dict[str, Any]) -> list[str]:
    """What a profile's hub weights and real data sets need that is not on this machine (offline)."""
    from . import hub
    from .data.real import REAL, available, data_root
    from .data.shifts import SHIFTS

    needs = [f"{hub.model_name(v)} weights in {hub.weights_root()}" for k, v in overrides.items()
             if k.endswith("source") and hub.is_hub(v) and not hub.weights_available(hub.model_name(v))]
    shifts = overrides.get("shifts", ())
    files = [overrides.get("target.name")] + [SHIFTS[s].files for s in shifts if s in SHIFTS]
    needs += [f"the {REAL[name].title} files in {data_root() / REAL[name].folder}"
              for name in dict.fromkeys(f for f in files if f in REAL) if not available(name)]
    return needs


# Short papermill/CLI names for the parameters every finding with a pretraining zoo shares.
COMMON_ALIASES = {"pretrain_epochs": "pretrain.train.epochs", "source": "pretrain.source",
                  "source_size": "pretrain.source_size", "arch": "pretrain.model.arch",
                  "width": "pretrain.model.width", "depth": "pretrain.model.depth",
                  "ft_epochs": "finetune.epochs", "target_train": "target.train"}


def resolve_config(default: Any, profiles: dict[str, dict[str, Any]], profile: str, params: dict[str, Any],
                   finding: str, aliases: dict[str, str] = COMMON_ALIASES, short_names: tuple[str, ...] = (),
                   unlisted: str | None = None) -> Any:
    """A finding's config: its profile's overrides, then the user's parameters (None = keep), validated.

    Parameters use dotted names ('pretrain.train.epochs') or the short names in `aliases`; an unknown
    one is an error listing those, `short_names` (ones the caller handles itself) and the dotted names
    not containing `unlisted`.
    A config with a `device` field gets it resolved ('auto' -> cuda or cpu). The training loop's
    environment variables (TRANSFERLAB_COMPILE, TRANSFERLAB_CPU_FAST) are checked here too.
    """
    from .train import check_environment

    check_profile(profile)
    check_environment()
    if profile not in profiles:
        raise ParameterError(f"The 'profile' parameter {profile!r} (real data sets and hub weights) is not defined "
                             f"for {finding}; use one of {list(profiles)}.")
    params = {aliases.get(k, k): v for k, v in params.items()}
    needs = missing_downloads(profiles[profile]) and missing_downloads(
        {**profiles[profile], **{k: v for k, v in params.items() if v is not None}})
    if needs:   # a profile that downloads says all it lacks at once; a parameter's check names the parameter
        raise ParameterError(f"The 'profile' parameter {profile!r} needs {'; '.join(needs)} (or {ONLINE_ENV}=1 to "
                             f"download them).")
    cfg = validate(apply_overrides(apply_overrides(default, profiles[profile]), params,
                                   (*short_names, *aliases), unlisted))
    if any(f.name == "device" for f in dataclasses.fields(cfg)):
        cfg = dataclasses.replace(cfg, device=check_device(cfg.device))
    return cfg
