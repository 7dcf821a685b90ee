"""The loss landscape around fine-tuned solutions: linear-path barriers and module criticality.

- `error_along_path` / `loss_barrier`: test error on the straight line between two solutions
  theta(l) = (1 - l) theta_1 + l theta_2 (Neyshabur et al. 2020, Sec. 3.3; Frankle et al. 2020).
- `criticality_map`: per module, error after moving only that module's weights back toward
  their initial values, theta_a = (1 - a) theta_f + a theta_0, plus Gaussian noise
  (Chatterji, Neyshabur, Sedghi, ICLR 2020).

BatchNorm running statistics belong to one set of weights: at every new point of weight space
they are recomputed over training batches ("precise BN", see LESSONS.md), always with the same
batches, so identical weights give identical errors.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from ..data.device import DeviceData, batches
from ..train import autocast, average_bn_stats, batchnorms, precise_bn_inputs, predict, recompute_bn_stats

# Fixed seed of the batches used to recompute BatchNorm statistics at every point.
BN_SEED = 0


def _is_float(t: torch.Tensor) -> bool:
    return t.is_floating_point()


def interpolate_state(state_a: dict, state_b: dict, lam: float) -> dict:
    """(1 - lam) * a + lam * b for every floating-point tensor; integer buffers are taken from a."""
    return {k: torch.lerp(v.float(), state_b[k].float(), float(lam)).to(v.dtype) if _is_float(v) else v
            for k, v in state_a.items()}


def _accuracy(model: nn.Module, state: dict, data: DeviceData, bn_data: DeviceData | None,
              bn_batches: int = 4, bn_batch_size: int = 256, batch_size: int = 512) -> torch.Tensor:
    """Test accuracy of `model` with weights `state` as a 0-d tensor on the data's device (read from
    it by the caller, many at once), BN statistics recomputed on `bn_data` first."""
    model.load_state_dict(state)
    if bn_data is not None:
        recompute_bn_stats(model, bn_data, batch_size=bn_batch_size, num_batches=bn_batches, seed=BN_SEED)
    return (predict(model, data, batch_size) == data.labels).float().mean()


def _errors(accuracies: list[torch.Tensor]) -> np.ndarray:
    """1 - accuracy of each, read from the device in one go (one GPU sync, not one per point)."""
    return 1.0 - torch.stack(accuracies).cpu().double().numpy()


def _on(state: dict, device: torch.device) -> dict:
    """`state` with every tensor on `device`, so that interpolating and loading it copies nothing
    from the host (a pageable host-to-GPU copy waits for the GPU)."""
    return {k: v.to(device) for k, v in state.items()}


def error_at(model: nn.Module, state: dict, data: DeviceData, bn_data: DeviceData | None, **kwargs) -> float:
    """Test error of `model` with weights `state`, BN statistics recomputed on `bn_data` first."""
    return float(_errors([_accuracy(model, state, data, bn_data, **kwargs)])[0])


def error_along_path(model: nn.Module, state_a: dict, state_b: dict, data: DeviceData,
                     bn_data: DeviceData | None, points: int = 25, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(lambdas, errors) at `points` evenly spaced points of the segment from a (0) to b (1)."""
    if points < 2:
        raise ValueError(f"The 'points' parameter must be an int >= 2. Got {points!r} instead.")
    lams = np.linspace(0.0, 1.0, points)
    state_a, state_b = _on(state_a, data.device), _on(state_b, data.device)
    return lams, _errors([_accuracy(model, interpolate_state(state_a, state_b, lam), data, bn_data, **kwargs)
                          for lam in lams])


def loss_barrier(errors) -> float:
    """Largest error on the path minus the mean error of its two ends (0 for a flat path)."""
    errors = np.asarray(errors, dtype=float)
    return float(errors.max() - 0.5 * (errors[0] + errors[-1]))


def module_groups(model: nn.Module) -> "OrderedDict[str, list[str]]":
    """Parameter names per module, in forward order: top-level children, with `blocks` split
    into its blocks ('stem', 'blocks.0', ..., 'head' for the ResNet)."""
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for name, _ in model.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]
        groups.setdefault(key, []).append(name)
    return groups


@torch.no_grad()
def criticality_map(model: nn.Module, final_state: dict, init_state: dict, data: DeviceData,
                    bn_data: DeviceData | None, alphas, sigma: float = 0.0, draws: int = 1, seed: int = 0,
                    modules: "OrderedDict[str, list[str]] | None" = None, **kwargs) -> tuple[list[str], np.ndarray]:
    """Module criticality (Chatterji et al. 2020): error[m, i] after replacing module m's parameters by
    (1 - alphas[i]) theta_f + alphas[i] theta_0 + sigma * rms(theta_f) * N(0, 1) (per tensor), mean over
    `draws` noise draws. Weights that did not move (alpha = 0, sigma = 0) keep the trained BN statistics,
    so that cell is exactly the trained model's error.
    """
    modules = modules or module_groups(model)
    gen = torch.Generator().manual_seed(seed)
    final, init = _on(final_state, data.device), _on(init_state, data.device)
    staged = _StagedEvaluation(model, final, data, bn_data, **kwargs)   # (loads the final weights)
    draws = draws if sigma > 0 else 1
    moved = [i for i, alpha in enumerate(alphas) if alpha != 0 or sigma != 0]
    unmoved = [i for i in range(len(alphas)) if i not in moved]
    accuracies = []   # in (module, moved alpha, draw) order; read from the device once, at the end
    for name, params in modules.items():
        noise = _module_noise(final_state, params, len(moved) * draws, sigma, gen, data.device)
        for i in moved:
            for _ in range(draws):
                state = dict(final)
                for p in params:
                    theta = torch.lerp(final[p].float(), init[p].float(), float(alphas[i]))
                    if sigma > 0:
                        rms = final[p].float().square().mean().sqrt()
                        theta = theta + sigma * rms * next(noise)
                    state[p] = theta.to(final[p].dtype)
                accuracies.append(staged.accuracy(state, model.stage_of(name)))
    if unmoved:   # weights that did not move keep the trained BN statistics: the trained model's error
        accuracies.append(_accuracy(model, final, data, None, **kwargs))
    errors = _errors(accuracies)
    out = np.empty((len(modules), len(alphas)))
    out[:, moved] = errors[:len(modules) * len(moved) * draws].reshape(len(modules), len(moved), draws).mean(2)
    out[:, unmoved] = errors[-1]
    model.load_state_dict(final_state)
    return list(modules), out


class _StagedEvaluation:
    """`_accuracy` of states that differ from the final one only from stage k of `model.layer_stages()` on.

    The stages before k keep the final weights, so their outputs are the same for every such state: on
    the precise-BN batches (training mode) and, with the statistics those batches give the final
    weights, on the evaluation images. They are computed once per stage, advancing stage by stage as
    the criticality map moves module by module in forward order, and only stages k onward run per
    state: the statistics and the errors are a full pass's, bit for bit (tests/test_landscape.py).
    """

    def __init__(self, model: nn.Module, final: dict, data: DeviceData, bn_data: DeviceData | None,
                 bn_batches: int = 4, bn_batch_size: int = 256, batch_size: int = 512) -> None:
        self.model, self.final, self.labels = model, final, data.labels
        self.stages = [*model.layer_stages(), model.forward_tail]
        self.bn_inputs = [] if bn_data is None else list(precise_bn_inputs(bn_data, bn_batch_size, bn_batches,
                                                                            BN_SEED))
        model.load_state_dict(final)
        if bn_data is not None:
            average_bn_stats(model, self.bn_inputs)
        self.final_stats = {bn: _stats(bn, clone=True) for bn in batchnorms(model)}
        self.eval_inputs = [x for x, _ in batches(data, batch_size, shuffle=False)]
        self.stage, self.bn_acts, self.eval_acts = 0, self.bn_inputs, self.eval_inputs

    def accuracy(self, state: dict, k: int) -> torch.Tensor:
        """`_accuracy(model, state, ...)` for a state equal to the final one before stage k (0-d, on the device)."""
        self._advance(k)
        self.model.load_state_dict(state)
        ran = average_bn_stats(self.model, self.bn_acts, lambda x: self._run([x], k))
        self._restore_stats(bn for bn in self.final_stats if bn not in ran)   # the layers before stage k
        self.model.eval()
        with autocast(self.labels.device):
            predictions = torch.cat([logits.argmax(1) for logits in self._run(self.eval_acts, k)])
        return (predictions == self.labels).float().mean()

    def _advance(self, k: int) -> None:
        """Outputs of the first k stages with the final weights (from the inputs again if k is behind)."""
        if k < self.stage:
            self.stage, self.bn_acts, self.eval_acts = 0, self.bn_inputs, self.eval_inputs
        if k == self.stage:
            return
        self.model.load_state_dict(self.final)
        self.model.train()   # as precise BN runs them: batch statistics (the running ones are restored next)
        with autocast(self.labels.device):
            bn_acts = self._run(self.bn_acts, self.stage, k)
        self._restore_stats(self.final_stats)
        self.model.eval()
        with autocast(self.labels.device):
            self.eval_acts = self._run(self.eval_acts, self.stage, k)
        self.stage, self.bn_acts = k, bn_acts

    def _run(self, xs: list[torch.Tensor], start: int, stop: int | None = None) -> list[torch.Tensor]:
        """Each of `xs` through stages start to stop (default: through the logits)."""
        out = []
        for x in xs:
            for stage in self.stages[start:stop]:
                x = stage(x)
            out.append(x)
        return out

    def _restore_stats(self, bns) -> None:
        for bn in bns:
            for buffer, value in zip(_stats(bn), self.final_stats[bn]):
                buffer.copy_(value)


def _stats(bn: nn.Module, clone: bool = False) -> list[torch.Tensor]:
    """A BatchNorm layer's running statistics (the buffers precise BN recomputes)."""
    buffers = [bn.running_mean, bn.running_var, bn.num_batches_tracked]
    return [b.clone() for b in buffers] if clone else buffers


def _module_noise(state: dict, params: list[str], draws: int, sigma: float, gen: torch.Generator,
                  device: torch.device):
    """N(0, 1) noise for every draw of one module's parameters, drawn on the host from `gen` in the
    order a per-tensor loop draws it (so the same seed gives the same maps) and sent to `device`
    in one copy; yields one tensor per (draw, parameter). None of it when `sigma` is 0."""
    if sigma <= 0:
        return iter(())
    host = [torch.randn(state[p].shape, generator=gen) for _ in range(draws) for p in params]
    flat = torch.cat([t.flatten() for t in host]).to(device)
    return iter(chunk.view(t.shape) for chunk, t in zip(flat.split([t.numel() for t in host]), host))
