"""STIR (Nanda et al., ICML 2022): how much of one model's invariance another model shares.

For a reference model m1 and its layer i, every image x of a set X is *inverted*: starting
from noise, an image x' in [0, 1] is optimised until m1's layer i cannot tell it from x
(relative loss ||f1_i(x') - f1_i(x)|| / ||f1_i(x)||, best iterate kept per image). Then

    STIR(m2_j | m1_i) = CKA(f2_j(X), f2_j(X'_i)),

high when m2's layer j is invariant to whatever m1's layer i is invariant to. One inversion
set per (reference model, layer) serves every readout model and layer.

Two ways to invert the layers of one model, with the same result: `batched=True` optimises
all layers' image sets as one batch through one forward pass per step, each set leaving the
batch once its layer is read (one set of kernel launches: pays on a GPU); `False` loops over
layers with the forward pass truncated at each (small batches stay in a CPU's cache: faster on
a CPU thread, LESSONS.md). Both run the same FLOPs, and images are independent (models in eval
mode), so both follow the same per-image steps (on this project's CPU, bit for bit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..config import Choice, ParameterError
from ..data.device import standardize_unit
from ..train import autocast, fast_path
from .cka import paired_cka

OPTIMIZERS = ("adam", "ngd")   # Adam on the image / normalised-gradient steps (the STIR paper's)
# What a layer's representation is, for the inversion and the readout alike: the class token
# (a ResNet: the spatial mean), the mean of the patch tokens, or every token flattened.
REPRESENTATIONS = ("cls", "mean", "tokens")
STARTS = ("image", "noise")    # another image of the set (a derangement) / uniform noise


def num_layers(model: nn.Module) -> int:
    """How many layers `block_outputs` can read: every ViT block; a ResNet's stem and blocks."""
    return len(model.blocks) + (0 if hasattr(model, "cls_token") else 1)


def check_layers(layers: Sequence[int], model: nn.Module) -> list[int]:
    """Raise a one-line ParameterError unless every index names a layer of `model`."""
    depth = num_layers(model)
    bad = [i for i in layers if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < depth]
    if bad or not layers:
        raise ParameterError(f"The 'layers' parameter must be a non-empty list of layer indices in [0, {depth - 1}] "
                             f"(the model has {depth} layers). Got {list(layers)!r} instead.")
    return sorted(set(layers))


def block_outputs(model: nn.Module, images: torch.Tensor, layers: Sequence[int],
                  representation: str = "cls") -> list[torch.Tensor]:
    """(N, D) float32 representations of `layers` for images in [0, 1]; the forward pass stops
    at the deepest layer asked for."""
    Choice(REPRESENTATIONS)("representation", representation)
    vit = hasattr(model, "cls_token")
    with autocast(images.device):
        outs = model.forward_intermediates(standardize_unit(images), indices=list(layers), stop_early=True,
                                           **({"prefix_tokens": True} if vit else {}))
    return [_represent(model, o, representation) for o in outs]


def layer_set_outputs(model: nn.Module, images: torch.Tensor, layers: Sequence[int],
                      representation: str) -> list[torch.Tensor]:
    """Representations of the equal image sets that make up `images`, set k at layer `layers[k]`
    (sorted, distinct), in one forward pass in which each set leaves the batch once its layer is
    read: no block runs on a set past its layer."""
    n = images.shape[0] // len(layers)
    outs = []
    with autocast(images.device):
        h = standardize_unit(images)
        for i, stage in enumerate(model.layer_stages()[:layers[-1] + 1]):
            h = stage(h)
            if i in layers:
                out, h = h.split([n, h.shape[0] - n])   # one copy in the backward, unlike two slices
                outs.append(out)
    return [_represent(model, o, representation) for o in outs]


def _represent(model: nn.Module, out: torch.Tensor, representation: str) -> torch.Tensor:
    """(N, D) float32 `representation` of one layer's output (ViT tokens with the class token first)."""
    if representation == "tokens":
        return out.float().flatten(1)
    if not hasattr(model, "cls_token"):   # NCHW feature maps: class token and patch mean are both the spatial mean
        return out.float().mean(dim=(2, 3))
    return (out[:, 0] if representation == "cls" else out[:, model.num_prefix_tokens:].mean(dim=1)).float()


def _relative_loss(out: torch.Tensor, target: torch.Tensor, target_norm: torch.Tensor) -> torch.Tensor:
    return (out - target).flatten(1).norm(dim=1) / target_norm


@dataclass
class Inversions:
    """Per layer: the inverted images (N, C, H, W) in [0, 1] and each image's final relative loss."""
    layers: list[int]
    representation: str
    images: torch.Tensor      # (layers, N, C, H, W)
    residuals: torch.Tensor   # (layers, N): best relative representation loss per image
    start_loss: torch.Tensor  # (layers,): mean relative loss of the random starts

    def residual(self) -> torch.Tensor:
        """Mean relative loss per layer (0 = a perfect inversion)."""
        return self.residuals.mean(1)


def check_inversion(steps: int, step_size: float, optimizer: str, start: str = "image") -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ParameterError(f"The 'steps' parameter must be an int >= 1. Got {steps!r} instead.")
    if not isinstance(step_size, (int, float)) or not step_size > 0:
        raise ParameterError(f"The 'step_size' parameter must be a float > 0. Got {step_size!r} instead.")
    Choice(OPTIMIZERS)("optimizer", optimizer)
    Choice(STARTS)("start", start)


def starting_images(images: torch.Tensor, sets: int, start: str, seed: int) -> torch.Tensor:
    """(sets, N, C, H, W) starts: per set, every image replaced by another image of the set
    (a random derangement), or uniform noise.

    From another image, what layer i is invariant to stays from the start image, where a
    readout can see it; independent noise left in an inversion is largely invisible to a
    debiased CKA (it only adds to the Gram diagonal), so noise starts overstate STIR.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    n = images.shape[0]
    if start == "noise":
        return torch.rand((sets, *images.shape), generator=generator).to(images.device)
    out = torch.empty((sets, *images.shape), dtype=images.dtype, device=images.device)
    for k in range(sets):
        order = torch.randperm(n, generator=generator).to(images.device)
        out[k, order] = images[order.roll(1)]   # image order[i] starts from image order[i-1]
    return out


def invert(model: nn.Module, images: torch.Tensor, layers: Sequence[int], *, representation: str = "cls",
           steps: int = 300, step_size: float = 0.05, optimizer: str = "adam", start: str = "image", seed: int = 0,
           batched: bool | None = None, progress=None) -> Inversions:
    """Invert `model`'s `layers` for float `images` in [0, 1] from `starting_images`.

    `optimizer='ngd'` takes steps of length `step_size` along each image's normalised gradient
    (the STIR recipe: 0.5, ~500 steps); 'adam' uses Adam with learning rate `step_size`. Both
    decay the step with a cosine, clamp to [0, 1] and keep each image's best iterate.
    `batched=None` picks the batched path on CUDA and the per-layer loop elsewhere.
    """
    check_inversion(steps, step_size, optimizer, start)
    layers = check_layers(list(layers), model)
    model.eval().requires_grad_(False)
    starts = starting_images(images, len(layers), start, seed)
    with torch.no_grad():
        targets = block_outputs(model, images, layers, representation)
    if batched is None:
        batched = images.device.type == "cuda"
    groups = [list(range(len(layers)))] if batched else [[k] for k in range(len(layers))]
    out_images, residuals, start_loss = torch.empty_like(starts), [], []
    for group in groups:
        best, best_loss, first = _optimise(model, representation, starts[group], [layers[k] for k in group],
                                           [targets[k] for k in group], steps, step_size, optimizer, progress)
        out_images[group] = best
        residuals.append(best_loss)
        start_loss.append(first)
    return Inversions(layers, representation, out_images, torch.cat(residuals).cpu(), torch.cat(start_loss).cpu())


def _optimise(model: nn.Module, representation: str, starts: torch.Tensor, layers: list[int],
              targets: list[torch.Tensor], steps: int, step_size: float, optimizer: str,
              progress) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimise the (G, N, ...) image sets `starts`, set g against `targets[g]` of layer `layers[g]`."""
    g, n = starts.shape[:2]
    norms = torch.stack([t.flatten(1).norm(dim=1).clamp_min(1e-12) for t in targets])       # (G, N)
    x = starts.reshape(g * n, *starts.shape[2:]).clone().requires_grad_(True)
    # On the fast path one fused kernel per step, which also reads no step count back to the host.
    adam = torch.optim.Adam([x], lr=step_size, fused=fast_path(x.device)) if optimizer == "adam" else None
    best, best_loss = x.detach().clone(), torch.full((g * n,), float("inf"), device=x.device)

    def losses() -> torch.Tensor:
        outs = layer_set_outputs(model, x, layers, representation)
        return torch.cat([_relative_loss(outs[k], targets[k], norms[k]) for k in range(g)])

    for step in range(steps + 1):
        loss = losses()
        with torch.no_grad():   # the current iterate's loss: keep it where it is each image's best so far
            if step == 0:
                first = loss.view(g, n).mean(1)
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), x, best)   # (a mask index would sync)
        if step == steps:
            break
        (grad,) = torch.autograd.grad(loss.sum(), x)
        scale = 0.5 * (1 + math.cos(math.pi * step / steps))   # cosine decay
        with torch.no_grad():
            if adam is None:
                x -= step_size * scale * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            else:
                x.grad = grad
                for group in adam.param_groups:
                    group["lr"] = step_size * scale
                adam.step()
            x.clamp_(0.0, 1.0)
        if progress is not None:
            progress.update(g)   # one step of each of the g layers
    return best.view_as(starts), best_loss.view(g, n), first


@torch.no_grad()
def stir_map(readout_model: nn.Module, images: torch.Tensor, inversions: Inversions, layers: Sequence[int],
             debiased: bool = True) -> torch.Tensor:
    """(reference layer i, readout layer j) matrix of STIR(readout_j | reference_i), read out in
    the representation the inversions matched."""
    readout_model.eval()
    rep = inversions.representation
    original = block_outputs(readout_model, images, layers, rep)
    return torch.stack([paired_cka(original, block_outputs(readout_model, inverted, layers, rep), debiased)
                        for inverted in inversions.images])


@torch.no_grad()
def noise_baseline(readout_model: nn.Module, images: torch.Tensor, layers: Sequence[int],
                   representation: str = "cls", debiased: bool = True, seed: int = 0) -> torch.Tensor:
    """Per readout layer: CKA of the features of `images` vs of uniform-noise images (the floor of a map)."""
    readout_model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.rand(images.shape, generator=generator).to(images.device)
    return paired_cka(block_outputs(readout_model, images, layers, representation),
                      block_outputs(readout_model, noise, layers, representation), debiased)
