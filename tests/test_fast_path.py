"""The CUDA fast path (bf16 autocast, channels_last training, fused optimizer), run on the CPU.

No GPU takes part in the tests, so without these its code would first run on a lent GPU, where
a crash costs the study's whole device time. Adding "cpu" to FAST_PATH_DEVICE_TYPES runs the
same code here: only the kernels differ (a CPU without bf16 units emulates them slowly, so the
models are tiny). The `fast_path_on_cpu` fixture is in conftest.py; tests/test_train.py also resumes
an interrupted run on the fast path. Users switch the same path on for a CPU with
TRANSFERLAB_CPU_FAST=1: in bf16 on a CPU with bf16 units, in fp32 elsewhere (both tested below on
any CPU).
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from transferlab import train as train_module
from transferlab.config import ModelConfig, ParameterError, TrainConfig
from transferlab.data.device import DeviceData
from transferlab.findings import cross, fe_vs_ft, feature_reuse, invariance, lpft_ood
from transferlab.metrics.stir import invert
from transferlab.models import create_model
from transferlab.provenance import device_name
from transferlab.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from transferlab.train import bf16_path, extract_features, fast_path, predict, train

CFG = TrainConfig(epochs=3, batch_size=64, lr=3e-3)
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


def train_and_record(model: torch.nn.Module, data: DeviceData) -> tuple[list[float], dict]:
    """`train` on `data`, with what the loop ran: its optimizer, the first convolution's weight layout
    and output dtype, and the head's output dtype."""
    seen = {}
    make_optimizer = train_module.make_optimizer

    def recording_optimizer(m, train_cfg):
        seen["optimizer"] = make_optimizer(m, train_cfg)
        return seen["optimizer"]

    def record_conv(module, inputs, output) -> None:   # (a hook that returned a value would replace the output)
        seen.setdefault("conv_layout", module.weight.is_contiguous(memory_format=torch.channels_last))
        seen.setdefault("conv_dtype", output.dtype)

    def record_head(module, inputs, output) -> None:
        seen.setdefault("head_dtype", output.dtype)

    hooks = [next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(record_conv),
             model.get_classifier().register_forward_hook(record_head)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "make_optimizer", recording_optimizer)
        losses = train(model, data, CFG, seed=0).losses
    for hook in hooks:
        hook.remove()
    return losses, seen


def test_the_cpu_default_is_the_fp32_path():
    assert not fast_path(torch.device("cpu")) and fast_path(torch.device("cuda"))
    with train_module.autocast(torch.device("cpu")):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("native_bf16", [True, False])
def test_cpu_fast_switch_turns_the_fast_path_on_in_bf16_where_the_cpu_has_bf16_units(monkeypatch, native_bf16):
    """TRANSFERLAB_CPU_FAST=1 runs the fast path on the CPU, in bf16 autocast on a CPU with bf16 units
    and in fp32 on one without, and every result's device says which; a value it cannot mean is
    refused when a finding's parameters are resolved (before any compute); unset or 0, the CPU
    stays on the default fp32 path."""
    monkeypatch.setattr(train_module, "native_bf16_cpu", lambda: native_bf16)
    monkeypatch.setenv("TRANSFERLAB_CPU_FAST", "1")
    precision = torch.bfloat16 if native_bf16 else torch.float32
    assert fast_path(torch.device("cpu")) and bf16_path(torch.device("cpu")) == native_bf16
    assert device_name("cpu").endswith(f" threads, {'bf16' if native_bf16 else 'fp32'} fast path)")
    with train_module.autocast(torch.device("cpu")):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == precision
    assert fe_vs_ft.config("ci").device == "cpu"
    monkeypatch.setenv("TRANSFERLAB_CPU_FAST", "yes")
    with pytest.raises(ParameterError, match=r"'TRANSFERLAB_CPU_FAST' environment variable must be one of \['0', '1'\]"):
        fe_vs_ft.config("ci")
    for off in ("0", ""):
        monkeypatch.setenv("TRANSFERLAB_CPU_FAST", off)
        assert not fast_path(torch.device("cpu")) and device_name("cpu").endswith(" threads)")


def test_cpu_fast_switch_without_bf16_units_trains_fp32_channels_last_with_a_fused_optimizer(stripes, monkeypatch,
                                                                                            fp32_fast_path_on_cpu):
    """On a CPU without bf16 units the fast path keeps fp32 arithmetic and changes only the layout
    and the optimizer's kernel, so its losses match the default path's but for rounding."""
    data = DeviceData.from_arrays(stripes, "cpu")
    torch.manual_seed(0)
    model = create_model(ModelConfig(width=8), stripes.num_classes)
    default_model = copy.deepcopy(model)
    losses, seen = train_and_record(model, data)
    assert seen["optimizer"].defaults["fused"] is True
    assert seen["conv_layout"] is True and seen["conv_dtype"] == seen["head_dtype"] == torch.float32
    monkeypatch.setenv("TRANSFERLAB_CPU_FAST", "0")
    default_losses, seen = train_and_record(default_model, data)
    assert seen["optimizer"].defaults["fused"] is False and seen["conv_layout"] is False
    assert losses == pytest.approx(default_losses, rel=1e-3), (losses, default_losses)


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_fast_path_runs_attention_as_matrix_products_on_a_cpu_only(fast_path_on_cpu):
    """The CPU's fused attention is slow in bf16 (its backward took 5.5x as long as in fp32 for the
    benchmark's ViT), so the CPU's fast path picks the plain one; CUDA keeps its fused kernels."""
    assert torch.backends.cuda.flash_sdp_enabled()
    with train_module.autocast(torch.device("cpu")):
        assert torch.backends.cuda.math_sdp_enabled() and not torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()
    with train_module.autocast(torch.device("cuda")):   # (no kernel runs: only the flags are read)
        assert torch.backends.cuda.flash_sdp_enabled()


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_fast_path_trains_in_bf16_channels_last_with_a_fused_optimizer(arch, stripes, fast_path_on_cpu,
                                                                       monkeypatch):
    """The fast path's losses track the fp32 path's from the same start, epoch by epoch."""
    data = DeviceData.from_arrays(stripes, "cpu")
    cfg = ModelConfig(arch=arch, width=8 if arch == "resnet" else 16, depth=8 if arch == "resnet" else 2)
    torch.manual_seed(0)
    model = create_model(cfg, stripes.num_classes)
    fp32_model = copy.deepcopy(model)
    losses, seen = train_and_record(model, data)
    assert seen["optimizer"].defaults["fused"] is True
    assert seen["conv_layout"] is True and seen["head_dtype"] == torch.bfloat16

    monkeypatch.setattr(train_module, "FAST_PATH_DEVICE_TYPES", frozenset({"cuda"}))
    fp32_losses, seen = train_and_record(fp32_model, data)
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    assert losses == pytest.approx(fp32_losses, abs=0.05), (losses, fp32_losses)
    assert seen["optimizer"].defaults["fused"] is False


def test_fast_path_features_are_float32_and_predictions_match_fp32(stripes, fast_path_on_cpu):
    data = DeviceData.from_arrays(stripes, "cpu")
    torch.manual_seed(0)
    model = create_model(ModelConfig(width=8), stripes.num_classes)
    train(model, data, TrainConfig(epochs=2, batch_size=128), seed=0)
    feats, preds = extract_features(model, data), predict(model, data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "FAST_PATH_DEVICE_TYPES", frozenset({"cuda"}))
        feats32, preds32 = extract_features(model, data), predict(model, data)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert torch.allclose(feats, feats32, rtol=0.05, atol=0.05 * feats32.abs().max().item())
    assert (preds == preds32).float().mean() > 0.95   # bf16 rounding may flip near-ties only


@pytest.mark.parametrize("path", ["fast_path_on_cpu", "fp32_fast_path_on_cpu"])
@pytest.mark.parametrize("batched", [True, False])
def test_fast_path_inversion_lowers_the_representation_loss(batched, path, request):
    request.getfixturevalue(path)
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch="vit", width=16, depth=3, heads=2), num_classes=3).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand((8, 3, 4, 4), generator=g), size=32, mode="bilinear")
    inv = invert(model, images, [0, 1, 2], steps=30, step_size=0.05, batched=batched)
    assert inv.images.dtype == torch.float32 and torch.isfinite(inv.residual()).all()
    assert (inv.residual() < 0.5 * inv.start_loss).all(), (inv.residual(), inv.start_loss)


def test_fast_path_runs_every_finding_end_to_end(fast_path_on_cpu):
    """Each chapter's whole analysis on the ci profile with one seed (01: two, its control pairs
    seeds) and a ResNet of width 8 where the chapter uses the ResNet zoo (05 reuses 02 and 03's
    runs): only to show that no step of the fast path fails and that every verdict gets one of
    the three values."""
    resnet_zoo = {"seeds": 1, "width": 8}
    chapters = [(invariance, {}), (fe_vs_ft, resnet_zoo), (feature_reuse, resnet_zoo),
                (lpft_ood, {"seeds": 1, "pretrain.model.width": 8}), (cross, resnet_zoo)]
    for finding, params in chapters:
        results = finding.run(finding.config("ci", device="cpu", **params))
        assert len(results.verdicts) and results.verdicts["verdict"].isin(VERDICTS).all(), (finding, results.verdicts)
