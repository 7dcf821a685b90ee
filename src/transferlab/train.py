"""One training loop for pretraining and fine-tuning.

Fast because data never leaves the device, the step has no host sync (the loss is
accumulated on the device and read once per epoch), and CUDA runs in bf16 autocast with
channels_last convolutions and a fused optimizer. TRANSFERLAB_CPU_FAST=1 runs that fast path on a
CPU too: in bf16 where the CPU has native bf16 arithmetic, in fp32 elsewhere (off by default: the
published cpu results are fp32 in the default layout).
TRANSFERLAB_COMPILE=1 also compiles the training forward pass with torch.compile, and
TRANSFERLAB_COMPILE=reduce-overhead replays it as CUDA graphs (both off by default: compiling
costs minutes on a CPU).
Checkpoints are safetensors weights + JSON metadata; the loop resumes from the last one.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from .cache import atomic_write, read_json, write_json
from .config import ParameterError, TrainConfig
from .cpu_memory import keep_freed_memory
from .data.device import DeviceData, batches, random_translate, standardize, steps_per_epoch

# Denormal floats (tiny weights and gradients late in training) make CPU arithmetic 2-3x slower
# here; flushing them to zero changes nothing measurable and is what GPUs do anyway. And freed
# activations stay in the process for the next step (cpu_memory).
torch.set_flush_denormal(True)
keep_freed_memory()


# Device types that run the fast path: bf16 autocast, channels_last in the training loop and a
# fused optimizer. Not the CPU by default (TRANSFERLAB_CPU_FAST below): the published cpu results and
# the cached zoo were computed in fp32 with the default layout. The tests add "cpu" here to run the
# CUDA path's code before a GPU ever does.
FAST_PATH_DEVICE_TYPES = frozenset({"cuda"})
CPU_FAST_ENV = "TRANSFERLAB_CPU_FAST"


def env_setting(name: str, meanings: dict[str, object]) -> object:
    """What the environment variable `name` means by its value (unset reads as '0'); a value
    `meanings` lacks is an error naming the variable and the values it takes."""
    value = os.environ.get(name, "0")
    if value not in meanings:
        raise ParameterError(f"The {name!r} environment variable must be one of "
                             f"{sorted(k for k in meanings if k)} (or unset). Got {value!r} instead.")
    return meanings[value]


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 instructions that oneDNN uses (AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_fast_path() -> bool:
    """Whether TRANSFERLAB_CPU_FAST=1 asks for the fast path on the CPU (opt-in: it changes the CPU's
    arithmetic, so its results differ from the published cpu ones)."""
    return env_setting(CPU_FAST_ENV, {"": False, "0": False, "1": True})


def fast_path(device: torch.device) -> bool:
    """Whether `device` trains channels_last with a fused optimizer (see FAST_PATH_DEVICE_TYPES and
    TRANSFERLAB_CPU_FAST)."""
    return device.type in FAST_PATH_DEVICE_TYPES or (device.type == "cpu" and cpu_fast_path())


def bf16_path(device: torch.device) -> bool:
    """Whether the fast path on `device` also computes in bf16 autocast: on CUDA, and on a CPU with bf16
    units. A CPU without them emulates bf16 slowly, so its fast path stays in fp32 (Performance page)."""
    return device.type in FAST_PATH_DEVICE_TYPES or (fast_path(device) and native_bf16_cpu())


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on the fast path (CUDA tensor cores, a CPU's bf16 units); plain fp32 elsewhere.

    On a CPU in bf16, attention runs as plain matrix products: the CPU's fused (flash) attention
    took 5.5x as long as in fp32 in its backward pass for the benchmark's ViT (Performance page).
    """
    bf16 = bf16_path(device)
    attention = sdpa_kernel(SDPBackend.MATH) if bf16 and device.type == "cpu" else contextlib.nullcontext()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16), attention:
        yield


def channels_last(model: nn.Module) -> nn.Module:
    """channels_last weights: faster convolutions, on CUDA (tensor cores without layout
    transposes) and on a CPU (see the Performance page)."""
    return model.to(memory_format=torch.channels_last)


def fast_layout(model: nn.Module) -> nn.Module:
    """`channels_last` on the fast path. On a CPU the training loop keeps the default layout:
    switching would change the arithmetic of every cached zoo checkpoint (chapter 03's fine-tuning
    runs, written channels_last from the start, call `channels_last` themselves)."""
    return channels_last(model) if fast_path(next(model.parameters()).device) else model


# TRANSFERLAB_COMPILE -> torch.compile mode of the training forward pass (None: not compiled).
# 'reduce-overhead' also replays each compiled step as a CUDA graph: one launch instead of one per
# operator, for steps bound by the host launching kernels (the Performance page).
COMPILE_MODES = {"": None, "0": None, "1": "default", "reduce-overhead": "reduce-overhead"}


def compile_mode() -> str | None:
    """The torch.compile mode TRANSFERLAB_COMPILE asks for, or None; a value it cannot mean is an error."""
    return env_setting("TRANSFERLAB_COMPILE", COMPILE_MODES)


def check_environment() -> None:
    """Refuse a TRANSFERLAB_COMPILE or TRANSFERLAB_CPU_FAST value the loop cannot use, before any compute."""
    compile_mode()
    cpu_fast_path()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay only on >= 2-D weights (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = fast_path(next(model.parameters()).device)  # one kernel for all parameters
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, fused=fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)


def warmup_cosine(total_steps: int, warmup_frac: float) -> Callable[[int], float]:
    warmup = int(round(warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def early_checkpoint_steps(fractions: Sequence[float], steps: int,
                           parameter: str = "early_checkpoints") -> dict[int, float]:
    """{step of epoch 1: fraction} for the checkpoints saved inside the first epoch (fractions < 1).

    Refuses fractions that round to one step, or to the epoch's last step (that is 'ep1'): one
    of them would be lost, or saved under a name its weights do not match, and the finding
    reading it would fail or compare a checkpoint with itself after all the training.
    """
    early: dict[int, float] = {}
    for fraction in sorted(f for f in fractions if f < 1.0):
        step = max(1, int(round(fraction * steps)))
        if step >= steps or step in early:
            raise ParameterError(
                f"The '{parameter}' parameter must put each checkpoint on its own step before the end of "
                f"epoch 1, which has {steps} step(s) here ({fraction:g} of it rounds to step {step}): use fewer "
                f"or further apart fractions, more images or a smaller batch_size. Got {tuple(fractions)!r} instead.")
        early[step] = fraction
    return early


class _AllBatchNormsRan(Exception):
    """Raised from a forward hook to stop a pass once every BatchNorm layer has seen the batch."""


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def precise_bn_inputs(data: DeviceData, batch_size: int = 256, num_batches: int = 8,
                      seed: int = 0) -> Iterator[torch.Tensor]:
    """The standardised training batches precise BN averages over, drawn in an order fixed by `seed`."""
    gen = torch.Generator(device=data.device).manual_seed(seed)
    return (x for _, (x, _) in zip(range(num_batches), batches(data, batch_size, shuffle=True, generator=gen)))


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, data: DeviceData, batch_size: int = 256, num_batches: int = 8,
                       seed: int = 0) -> None:
    """'Precise BN': replace running BatchNorm statistics by an average over training batches.

    LESSONS.md: in short runs the running statistics lag far behind the weights.
    """
    average_bn_stats(model, precise_bn_inputs(data, batch_size, num_batches, seed))


@torch.no_grad()
def average_bn_stats(model: nn.Module, inputs: Iterable[torch.Tensor],
                     forward: Callable[[torch.Tensor], object] | None = None) -> set[nn.Module]:
    """Reset every BatchNorm layer's running statistics, then average them over `forward(x)` (the
    model's forward unless given) for each x of `inputs`, in training mode; returns the layers that ran.

    Each pass stops as soon as every BatchNorm layer has run (the ViT's are all in its stem), since
    no later layer changes a statistic.
    """
    bns = batchnorms(model)
    if not bns:
        return set()
    forward = forward or model
    was_training = model.training
    ran: set[nn.Module] = set()
    seen: set[nn.Module] = set()

    def stop_after_last(module: nn.Module, inputs, output) -> None:
        ran.add(module)
        if len(ran) == len(bns):
            raise _AllBatchNormsRan

    hooks = [bn.register_forward_hook(stop_after_last) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
    model.train()
    try:
        for i, x in enumerate(inputs):
            # The cumulative average over the batches so far: momentum None computes this factor from
            # the layer's batch counter, a read from the device per layer and batch (a GPU sync);
            # the same number given as momentum reads nothing.
            for bn in bns:
                bn.momentum = 1.0 / (i + 1)
            ran.clear()
            try:
                with autocast(x.device):
                    forward(x)
            except _AllBatchNormsRan:
                pass
            seen |= ran
    finally:
        for hook in hooks:
            hook.remove()
        for bn in bns:
            bn.momentum = 0.1
        model.train(was_training)
    return seen


@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, batch_size: int = 512) -> torch.Tensor:
    """Predicted labels for every image, in order."""
    model.eval()
    preds = []
    for x, _ in batches(data, batch_size, shuffle=False):
        with autocast(data.device):
            preds.append(model(x).argmax(1))
    return torch.cat(preds)


def accuracy(model: nn.Module, data: DeviceData, batch_size: int = 512) -> float:
    return (predict(model, data, batch_size) == data.labels).float().mean().item()


@torch.no_grad()
def extract_features(model: nn.Module, data: DeviceData, batch_size: int = 512) -> torch.Tensor:
    """Pooled penultimate features (float32) for every image, in order."""
    model.eval()
    feats = []
    for x, _ in batches(data, batch_size, shuffle=False):
        with autocast(data.device):
            feats.append(model.forward_features(x).float())
    return torch.cat(feats)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)   # mean training loss per epoch
    checkpoints: list[str] = field(default_factory=list)
    seconds_before: float = 0.0   # what earlier processes spent on this run before the one resumed from
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Training seconds of this run so far, those of the processes it resumed from included."""
        return self.seconds_before + time.perf_counter() - self.started


def _epoch_generators(seed: int, epoch: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(batch order, augmentation) generators of one epoch, fixed by (seed, epoch) alone."""
    base = seed * 100_003 + epoch * 2
    return (torch.Generator(device=device).manual_seed(base),
            torch.Generator(device=device).manual_seed(base + 1))


def train(model: nn.Module, data: DeviceData, cfg: TrainConfig, *, seed: int,
          checkpoint_dir: Path | None = None, early_checkpoints: tuple = (),
          on_checkpoint: Callable[[str, float], dict] | None = None, desc: str = "train",
          freeze_bn: bool = False) -> TrainResult:
    """Train `model` on `data`; with `checkpoint_dir`, save and resume per-epoch checkpoints.

    Checkpoints are named by epoch ('ep1', 'ep0.5' for half of epoch 1). Resuming from the
    last complete checkpoint gives the same weights as an uninterrupted run: each epoch's
    batch order comes from a generator seeded by (seed, epoch), and the augmentation
    generator's state is saved with the checkpoint. `on_checkpoint(name, epoch)` may return
    extra metadata (e.g. accuracies) stored beside the weights. `freeze_bn` keeps every
    BatchNorm layer in eval mode (running statistics frozen, as LP-FT does for CNNs) and
    skips the precise-BN recompute; their affine weights still train.
    """
    device = data.device
    mode = compile_mode()
    forward = torch.compile(fast_layout(model), mode=mode) if mode else fast_layout(model)
    steps = steps_per_epoch(len(data), cfg.batch_size)
    bs = min(cfg.batch_size, len(data))
    optimizer = make_optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(cfg.epochs * steps, cfg.warmup_frac))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    early = early_checkpoint_steps(early_checkpoints, steps)
    done, aug_state, partial_loss, result = 0, None, None, TrainResult()
    if checkpoint_dir is not None:
        done, aug_state, partial_loss, result = _resume(checkpoint_dir, model, optimizer, schedule)

    bar = tqdm(total=cfg.epochs * steps, initial=done, desc=desc, leave=False, mininterval=1.0)
    for epoch in range(done // steps, cfg.epochs):
        order_gen, aug_gen = _epoch_generators(seed, epoch, device)
        order = torch.randperm(len(data), generator=order_gen, device=device)
        first = done - epoch * steps
        loss_sum = torch.zeros((), device=device)  # summed on the device: no host sync per step
        counted_from = first
        if first and aug_state is not None:  # resuming inside this epoch
            aug_gen.set_state(aug_state)
            if partial_loss is not None:  # the epoch's loss so far, so its mean matches an uninterrupted run
                loss_sum, counted_from = partial_loss.to(device), 0
        _train_mode(model, freeze_bn)
        for i in range(first, steps):
            images = data.images[order[i * bs:(i + 1) * bs]]
            if cfg.augment:
                images = random_translate(images, aug_gen)
            with autocast(device):
                loss = loss_fn(forward(standardize(images)), data.labels[order[i * bs:(i + 1) * bs]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
            bar.update(1)
            if checkpoint_dir is not None and epoch == 0 and (i + 1) in early:
                _save(checkpoint_dir, f"ep{early[i + 1]:g}", early[i + 1], i + 1, model, optimizer, schedule,
                      aug_gen, result, data, seed, on_checkpoint, freeze_bn, loss_sum)
        result.losses.append((loss_sum / max(1, steps - counted_from)).item())
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
        done = (epoch + 1) * steps
        if checkpoint_dir is not None:
            _save(checkpoint_dir, f"ep{epoch + 1}", float(epoch + 1), done, model, optimizer, schedule,
                  aug_gen, result, data, seed, on_checkpoint, freeze_bn)
    bar.close()
    if checkpoint_dir is None and not freeze_bn:  # (checkpoints already recomputed them when saved)
        recompute_bn_stats(model, data, seed=seed)
    return result


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode, with BatchNorm layers left in eval mode when their statistics are frozen."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _save(directory: Path, name: str, epoch: float, step: int, model: nn.Module, optimizer, schedule,
          gen: torch.Generator, result: TrainResult, data: DeviceData, seed: int,
          on_checkpoint: Callable | None, freeze_bn: bool = False, loss_sum: torch.Tensor | None = None) -> None:
    """Write weights (safetensors), resume state and metadata; the metadata file goes last.

    `loss_sum` is the running loss of an unfinished epoch (early checkpoints), kept for the resume.
    """
    if not freeze_bn:
        recompute_bn_stats(model, data, seed=seed + step)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / f"{name}.safetensors", lambda tmp: save_file(weights, str(tmp)))
    state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "generator": gen.get_state().cpu()}
    if loss_sum is not None:
        state["loss_sum"] = loss_sum.detach().cpu()
    atomic_write(directory / f"{name}.resume.pt", lambda tmp: torch.save(state, tmp))
    extra = on_checkpoint(name, epoch) if on_checkpoint else {}
    _train_mode(model, freeze_bn)
    result.checkpoints.append(name)
    meta = {"name": name, "epoch": epoch, "step": step, "losses": result.losses,
            "train_seconds": round(result.seconds(), 1), **extra}
    write_json(directory / f"{name}.json", meta)
    # last.json is the commit point: until it names this checkpoint, a resume ignores it.
    previous = read_json(directory / "last.json")
    write_json(directory / "last.json", {"name": name, "step": step, "checkpoints": result.checkpoints})
    if previous is not None:  # only the newest optimizer state is needed
        (directory / f"{previous['name']}.resume.pt").unlink(missing_ok=True)


def _resume(directory: Path, model: nn.Module, optimizer,
            schedule) -> tuple[int, torch.Tensor | None, torch.Tensor | None, TrainResult]:
    """(step, augmentation generator state, partial epoch loss, result so far) of the last checkpoint."""
    last = read_json(directory / "last.json")
    if last is None:
        return 0, None, None, TrainResult()
    try:  # both files read before the model changes: a damaged one leaves the initial weights
        weights = load_weights(directory / f"{last['name']}.safetensors")
        state = torch.load(directory / f"{last['name']}.resume.pt", weights_only=True)
    except Exception:  # a damaged checkpoint: start over rather than trust it
        return 0, None, None, TrainResult()
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    meta = read_json(directory / f"{last['name']}.json") or {}
    result = TrainResult(losses=list(meta.get("losses", [])), checkpoints=list(last["checkpoints"]),
                         seconds_before=float(meta.get("train_seconds", 0.0)))
    return int(last["step"]), state["generator"], state.get("loss_sum"), result


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))
