"""STIR: representation inversion, the batched and per-layer paths, maps and finding-01 statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from transferlab.config import ModelConfig, ParameterError
from transferlab.data.device import standardize_unit
from transferlab.findings import invariance
from transferlab.host_reads import HostReads
from transferlab.metrics.cka import linear_cka, paired_cka
from transferlab.metrics.stir import (block_outputs, invert, layer_set_outputs, noise_baseline, starting_images,
                                      stir_map)
from transferlab.models import create_model
from transferlab.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Estimate


def tiny_vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(ModelConfig(arch="vit", width=16, depth=3, heads=2), num_classes=3).eval()


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelConfig(arch="resnet", width=8, depth=8), num_classes=3).eval()


def images(n: int = 12, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (blobs, not pixel noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 3, 4, 4), generator=g)
    return nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)


class IdentityStem(nn.Module):
    """Layer 0 is the (standardised) input itself, layer 1 a convolution: an invertible input layer."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Conv2d(3, 4, 3, padding=1)])

    def forward_intermediates(self, x, indices=None, stop_early=False):
        outs = [x, self.blocks[0](x)]
        return outs if indices is None else [outs[i] for i in indices]

    def layer_stages(self):
        return [nn.Identity(), self.blocks[0]]


def test_inversion_lowers_the_relative_representation_loss():
    inv = invert(tiny_vit(), images(), [0, 1, 2], steps=40, step_size=0.05)
    assert inv.images.shape == (3, 12, 3, 32, 32)
    assert (inv.residual() < 0.5 * inv.start_loss).all(), (inv.residual(), inv.start_loss)
    assert inv.images.min() >= 0 and inv.images.max() <= 1


@pytest.mark.parametrize("optimizer, step_size", [("adam", 0.05), ("ngd", 0.5)])
def test_inverting_an_input_layer_recovers_the_input(optimizer, step_size):
    x = images(8)
    inv = invert(IdentityStem(), x, [0], representation="tokens", steps=300, step_size=step_size,
                 optimizer=optimizer)
    # The model sees standardised images, so the input is recovered up to brightness and contrast.
    recovered, original = standardize_unit(inv.images[0]).flatten(1), standardize_unit(x).flatten(1)
    correlation = torch.nn.functional.cosine_similarity(recovered, original, dim=1)
    assert correlation.min() > 0.99, correlation
    assert inv.residual()[0] < 0.05


def test_stir_of_a_model_with_itself_is_close_to_one_where_inversion_succeeds():
    model, x = tiny_vit(), images(16)
    inv = invert(model, x, [0, 1, 2], steps=150, step_size=0.05)
    assert (inv.residual() < 0.05).all(), inv.residual()
    diagonal = torch.diagonal(stir_map(model, x, inv, [0, 1, 2]))
    assert (diagonal > 0.95).all(), diagonal


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_batched_inversion_matches_the_per_layer_loop(arch):
    model, x = tiny_vit() if arch == "vit" else tiny_resnet(), images(6)
    looped = invert(model, x, [0, 2], steps=15, batched=False)
    batched = invert(model, x, [0, 2], steps=15, batched=True)
    torch.testing.assert_close(batched.images, looped.images, atol=1e-4, rtol=0)
    torch.testing.assert_close(batched.residuals, looped.residuals, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("optimizer", ["adam", "ngd"])
def test_inversion_steps_read_nothing_back_from_the_device(optimizer, fast_path_on_cpu):
    """On the fast path no step waits for the GPU: the reads (the residuals at the end) do not grow
    with the number of steps."""
    model, x = tiny_resnet(), images(6)
    counts = []
    for steps in (2, 6):
        with HostReads() as reads:
            invert(model, x, [1, 2], steps=steps, step_size=0.05, optimizer=optimizer, batched=True)
        counts.append(reads.total)
    assert counts[0] == counts[1] <= 2, counts


@pytest.mark.parametrize("arch", ["vit", "resnet"])
@pytest.mark.parametrize("representation", ["cls", "mean", "tokens"])
def test_layer_sets_read_each_set_at_its_own_layer(arch, representation):
    model = tiny_vit() if arch == "vit" else tiny_resnet()
    x, layers = images(9), [0, 1, 2]
    sets = layer_set_outputs(model, x, layers, representation)
    for k, layer in enumerate(layers):
        (alone,) = block_outputs(model, x[3 * k:3 * (k + 1)], [layer], representation)
        torch.testing.assert_close(sets[k], alone)


def test_a_layer_set_leaves_the_batch_once_its_layer_is_read():
    model, seen = tiny_vit(), []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: seen.append(out.shape[0]))
    layer_set_outputs(model, images(12), [0, 2], "cls")   # two sets of 6: block 0 reads the first
    assert seen == [12, 6, 6]


def test_image_starts_are_a_derangement_of_the_set():
    x = images(7)
    starts = starting_images(x, sets=2, start="image", seed=3)
    for k in range(2):
        matches = [[torch.equal(starts[k, i], x[j]) for j in range(7)] for i in range(7)]
        assert all(sum(row) == 1 and not row[i] for i, row in enumerate(matches))   # another image, each once
        assert [sum(col) for col in zip(*matches)] == [1] * 7


def test_noise_baseline_is_near_zero_and_far_below_the_cka_of_similar_images():
    model, x = tiny_vit(), images(32)
    floor = noise_baseline(model, x, [0, 1, 2])
    assert floor.abs().max() < 0.5
    nudged = (x + 0.02 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    near = paired_cka(block_outputs(model, x, [0, 1, 2]), block_outputs(model, nudged, [0, 1, 2]), True)
    assert (near - floor > 0.5).all(), (near, floor)


@pytest.mark.parametrize("debiased", [False, True])
def test_paired_cka_matches_linear_cka_per_layer(debiased):
    g = torch.Generator().manual_seed(0)
    a = [torch.randn(20, 5, generator=g), torch.randn(20, 3, 4, generator=g)]
    b = [a[0] @ torch.randn(5, 5, generator=g) + 0.1 * torch.randn(20, 5, generator=g), torch.randn(20, 7, generator=g)]
    expected = torch.tensor([linear_cka(u, v, debiased=debiased) for u, v in zip(a, b)])
    torch.testing.assert_close(paired_cka(a, b, debiased), expected, atol=1e-5, rtol=0)


def test_resnet_intermediates_stop_early_and_select_indices():
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch="resnet", width=4, depth=8), num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    full = model.forward_intermediates(x)
    some = model.forward_intermediates(x, indices=[0, 2], stop_early=True)
    assert len(full) == 4 and all(torch.equal(u, v) for u, v in zip(some, [full[0], full[2]]))


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": [3]}, "'layers' parameter must be a non-empty list of layer indices in [0, 2]"),
    ({"layers": [-1]}, "'layers' parameter"),
    ({"layers": []}, "'layers' parameter"),
    ({"layers": [0], "steps": 0}, "'steps' parameter must be an int >= 1"),
    ({"layers": [0], "step_size": -1.0}, "'step_size' parameter"),
    ({"layers": [0], "optimizer": "sgd"}, "'optimizer' parameter must be one of ['adam', 'ngd']"),
    ({"layers": [0], "start": "zeros"}, "'start' parameter"),
    ({"layers": [0], "representation": "pixels"}, "'representation' parameter"),
])
def test_bad_inversion_arguments_fail_with_one_line(kwargs, message):
    with pytest.raises(ParameterError) as err:
        invert(tiny_vit(), images(4), **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("params, message", [
    ({"layers": (4,)}, "'layers' parameter must hold block indices in [0, 1]"),
    ({"steps": 0}, "'steps' parameter"),
    ({"seeds": 1}, "'seeds' parameter"),
    ({"targets": ("mnist", "cifar10")}, "'targets' parameter"),
    ({"arch": "resnet"}, "'pretrain.model.arch' parameter must be 'vit'"),
    ({"images": 1_000}, "'images' parameter must be at most 'target.test'"),
    ({"representation": "pixels"}, "'representation' parameter"),
])
def test_bad_finding_parameters_fail_before_compute(params, message):
    with pytest.raises(ParameterError) as err:
        invariance.config("ci", **params)
    assert message in str(err.value)


# ---------------------------------------------------------------- statistics, hand-checked
def test_argmax_shift_and_thirds():
    m = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0.5, 0.4], [0, 0.9, 0.2, 0.8]])
    first, last = invariance.thirds([0, 1, 2, 3])
    assert (first, last) == ([0], [3])
    assert invariance.argmax_shift(m, last, [0, 1, 2, 3]) == 2.0          # row 3 peaks at column 1
    assert invariance.argmax_shift(m, [0, 1, 2], [0, 1, 2, 3]) == 0.0
    assert invariance.argmax_shift(m, last, [0, 2, 4, 6]) == 4.0          # in blocks: block 6 peaks at block 2
    m[3, 0] = np.nan                                                       # np.argmax would pick the NaN
    assert np.isnan(invariance.argmax_shift(m, last, [0, 1, 2, 3]))
    assert invariance.thirds(list(range(8))) == ([0, 1], [6, 7])


def test_sanity_gap():
    s = np.array([[1.0, 1.0, 1.0], [0.6, 1.0, 1.0], [0.2, 0.4, 0.9]])
    upper, gap = invariance.sanity_gap(s, [2])
    assert upper == pytest.approx(0.9) and gap == pytest.approx(0.9 - 0.3)


@pytest.mark.parametrize("s, control, expected", [
    (Estimate(1.5, 1.0, 2.0, 0.2, 3), Estimate(0.0, -0.3, 0.3, 0.1, 3), REPRODUCED),
    (Estimate(1.5, 1.0, 2.0, 0.2, 3), Estimate(1.0, 0.6, 1.4, 0.1, 3), INCONCLUSIVE),   # the control moves too
    (Estimate(0.2, -0.1, 0.5, 0.2, 3), Estimate(0.0, -0.3, 0.3, 0.1, 3), NOT_REPRODUCED),
    (Estimate(1.0, 0.4, 1.6, 0.2, 3), Estimate(0.0, -0.3, 0.3, 0.1, 3), INCONCLUSIVE),
])
def test_verdict_a2(s, control, expected):
    assert invariance.verdict_a2(s, control) == expected


def _verdict_inputs(control_peak: int) -> tuple:
    """Three identical seeds, blocks 0-2: S shows invariance, R's deep row peaks at block 0
    (s = 2), the control C's deep row at `control_peak`; every model learned, no inversion failed."""
    sanity = [[1.0, 1.0, 1.0], [0.5, 1.0, 1.0], [0.2, 0.3, 1.0]]
    retained = [[1.0, 0.5, 0.2], [0.6, 0.9, 0.4], [0.8, 0.5, 0.3]]
    control = np.eye(3)
    control[2] = 0.1
    control[2, control_peak] = 0.9
    maps = {seed: {"S": sanity, "C": control.tolist(), "R[mnist]": retained} for seed in range(3)}
    stats = invariance.statistics(maps, [0, 1, 2], ("mnist",))
    models = pd.DataFrame({"source_acc": [0.9, 0.9, 0.9]})
    residuals = pd.DataFrame({"model": ["pt"], "layer": [0], "failed": [False]})
    noise = pd.DataFrame({"model": ["pt", "pt'", "ft[mnist]"], "cka": [0.0, 0.0, 0.0]})
    return stats, models, residuals, noise, maps, ("mnist",)


def test_verdicts_say_why_a2_is_inconclusive_when_the_control_moves():
    quiet = invariance.verdicts(*_verdict_inputs(control_peak=2)).set_index("claim")
    assert quiet.loc["A2", "verdict"] == REPRODUCED and quiet.loc["A2", "note"] == ""
    moved = invariance.verdicts(*_verdict_inputs(control_peak=0)).set_index("claim")
    assert moved.loc["control", "value (95% CI over seeds)"].startswith("2.000")
    assert moved.loc["A2", "verdict"] == INCONCLUSIVE
    assert moved.loc["A2", "note"] == "the control's s is not inside (-0.5, 0.5)"
    assert moved.loc["A1", "verdict"] == REPRODUCED and moved.loc["A1", "note"] == ""  # A1 needs no control
