"""Several seeds of one small model at once: training steps of S models stacked with
`torch.func.stack_module_state` and run as one vmapped step, vs the S models one after another
(what the library does: every zoo run and fine-tuning trains on its own).

Both do the same work: per seed, the same batches, cross-entropy, AdamW on all weights, under
the library's precision (bf16 autocast where its fast path trains in bf16: CUDA, or a CPU with
bf16 units under TRANSFERLAB_CPU_FAST=1; fp32 otherwise). Where the vmapped step fails
under bf16 (torch.func's batch-norm rule pairs a bf16 weight with fp32 running statistics, which
a CPU rejects and a GPU may), both are measured in fp32 and the row says so. A vmapped step
turns S small matrix products into one batched one, which pays where kernels are too small to
fill the device (a GPU) and not where each one already keeps the cores busy (a CPU thread). The library adopts it only where this ratio is
above 1, on the device measured.
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from transferlab.config import ModelConfig
from transferlab.models import create_model
from transferlab.train import bf16_path

from .common import case, compare

NUM_CLASSES = 10


def _cases(device: str, quick: bool) -> list[tuple[str, ModelConfig, int, int]]:
    """(name, model, batch size, steps): the zoo's ViT and ResNet of the profile this device runs."""
    if quick:
        return [("vit_w16_d2", ModelConfig(arch="vit", width=16, depth=2, heads=2), 8, 2)]
    if device.startswith("cuda"):
        return [("vit_w192_d8", ModelConfig(arch="vit", width=192, depth=8, heads=3), 256, 30),
                ("resnet20_w32", ModelConfig(arch="resnet", width=32, depth=20), 256, 30)]
    return [("vit_w64_d4", ModelConfig(arch="vit", width=64, depth=4, heads=2), 128, 6),
            ("resnet8", ModelConfig(arch="resnet", width=16, depth=8), 128, 6)]


def build(model_cfg: ModelConfig, batch: int, steps: int, seeds: int, device: str,
          bf16: bool | None = None) -> tuple[Callable[[], None], Callable[[], None], list[nn.Module], dict]:
    """(vmapped, one_after_another, the separate models, the stacked parameters): both callables
    train from the same initial weights on the same batches, under bf16 autocast if `bf16`
    (default: where the library's fast path trains in bf16, `transferlab.train.bf16_path`)."""
    dev = torch.device(device)
    bf16 = bf16_path(dev) if bf16 is None else bf16

    def precision():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    models = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        models.append(create_model(model_cfg, NUM_CLASSES).to(device))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(steps, seeds, batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, NUM_CLASSES, (steps, seeds, batch), generator=gen).to(device)
    params, buffers = stack_module_state([copy.deepcopy(m) for m in models])
    skeleton = copy.deepcopy(models[0]).to("meta")
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in models]
    stacked_opt = torch.optim.AdamW(list(params.values()), lr=1e-3)

    def one_after_another() -> None:
        for model, opt, s in zip(models, optimizers, range(seeds)):
            model.train()
            for t in range(steps):
                with precision():
                    loss = F.cross_entropy(model(x[t, s]), y[t, s])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    def loss_of(p: dict, b: dict, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with precision():
            return F.cross_entropy(functional_call(skeleton, (p, b), (images,)), labels)

    step = vmap(grad_and_value(loss_of), randomness="different")

    def vmapped() -> None:
        skeleton.train()
        for t in range(steps):
            with warnings.catch_warnings():   # CPU attention's backward has no batching rule: torch warns
                warnings.filterwarnings("ignore", message="There is a performance drop")
                grads, _ = step(params, buffers, x[t], y[t])
            for key, p in params.items():
                p.grad = grads[key]
            stacked_opt.step()

    return vmapped, one_after_another, models, params


def seeds_case(name: str, model_cfg: ModelConfig, batch: int, steps: int, seeds: int, device: str,
               quick: bool, bf16: bool | None = None) -> dict:
    """One row; `bf16` as in `build`, falling back to fp32 on both sides where the vmapped step fails."""
    bf16 = bf16_path(torch.device(device)) if bf16 is None else bf16
    vmapped, one_after_another, _, _ = build(model_cfg, batch, steps, seeds, device, bf16)
    precision = "bf16 autocast" if bf16 else "fp32"
    try:
        vmapped()   # the warm-up: fails at once where vmap has no rule for this precision
    except RuntimeError as err:
        precision = f"fp32 (the vmapped step failed under bf16 autocast: {str(err).splitlines()[0]})"
        vmapped, one_after_another, _, _ = build(model_cfg, batch, steps, seeds, device, bf16=False)
        vmapped()
    one_after_another()
    ours_m, base_m = compare(vmapped, one_after_another, device, repeats=1 if quick else 3)
    return case(name, f"{seeds} seeds x {steps} training steps: vmapped vs one after another", ours_m, base_m,
                items=seeds * steps * batch, device=device, target=None, seeds=seeds, batch_size=batch,
                model=vars(model_cfg), default_path="one after another", precision=precision)


def run(quick: bool, device: str) -> dict:
    return {"cases": [seeds_case(*spec, seeds=3, device=device, quick=quick) for spec in _cases(device, quick)],
            "notes": __doc__.strip()}
