"""The CUDA fast path (bf16 autocast, channels_last training, fused optimizer), run on the CPU.

No GPU takes part in the tests, so without these its code would first run on a lent GPU, where
a crash costs the study's whole device time. Adding "cpu" to FAST_PATH_DEVICE_TYPES runs the
same code here: only the kernels differ (a CPU without bf16 units emulates them slowly, so the
models are tiny). The `fast_path_on_cpu` fixture is in conftest.py; tests/test_train.py also resumes
an interrupted run on the fast path. Users switch the same path on for a CPU with bf16 units with
TRANSFERLAB_CPU_FAST=1 (tested below without needing such a CPU).
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
from transferlab.train import extract_features, fast_path, predict, train

CFG = TrainConfig(epochs=3, batch_size=64, lr=3e-3)
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


def test_the_cpu_default_is_the_fp32_path():
    assert not fast_path(torch.device("cpu")) and fast_path(torch.device("cuda"))
    with train_module.autocast(torch.device("cpu")):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("native_bf16", [True, False])
def test_cpu_fast_switch_turns_the_fast_path_on_for_a_cpu_with_bf16_units(monkeypatch, native_bf16):
    """TRANSFERLAB_CPU_FAST=1 runs the fast path on the CPU, and every result's device says so; on a
    CPU without bf16 units it is refused with the reason, like an unknown value, when a finding's
    parameters are resolved (before any compute); unset or 0, the CPU stays fp32."""
    monkeypatch.setattr(train_module, "native_bf16_cpu", lambda: native_bf16)
    monkeypatch.setenv("TRANSFERLAB_CPU_FAST", "1")
    if native_bf16:
        assert fast_path(torch.device("cpu")) and device_name("cpu").endswith(" threads, bf16 fast path)")
        assert fe_vs_ft.config("ci").device == "cpu"
    else:
        with pytest.raises(ParameterError, match="TRANSFERLAB_CPU_FAST=1 needs a CPU with native bf16"):
            fe_vs_ft.config("ci")
    monkeypatch.setenv("TRANSFERLAB_CPU_FAST", "yes")
    with pytest.raises(ParameterError, match=r"'TRANSFERLAB_CPU_FAST' environment variable must be one of \['0', '1'\]"):
        fe_vs_ft.config("ci")
    for off in ("0", ""):
        monkeypatch.setenv("TRANSFERLAB_CPU_FAST", off)
        assert not fast_path(torch.device("cpu")) and device_name("cpu").endswith(" threads)")


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
    seen = {}
    make_optimizer = train_module.make_optimizer

    def recording_optimizer(m, train_cfg):
        seen["optimizer"] = make_optimizer(m, train_cfg)
        return seen["optimizer"]

    def record_conv(module, inputs, output) -> None:   # (a hook that returned a value would replace the output)
        seen.setdefault("conv_layout", module.weight.is_contiguous(memory_format=torch.channels_last))

    def record_head(module, inputs, output) -> None:
        seen.setdefault("head_dtype", output.dtype)

    monkeypatch.setattr(train_module, "make_optimizer", recording_optimizer)
    next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(record_conv)
    model.get_classifier().register_forward_hook(record_head)
    losses = train(model, data, CFG, seed=0).losses
    assert seen["optimizer"].defaults["fused"] is True
    assert seen["conv_layout"] is True and seen["head_dtype"] == torch.bfloat16

    monkeypatch.setattr(train_module, "FAST_PATH_DEVICE_TYPES", frozenset({"cuda"}))
    fp32_losses = train(fp32_model, data, CFG, seed=0).losses
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


@pytest.mark.parametrize("batched", [True, False])
def test_fast_path_inversion_lowers_the_representation_loss(batched, fast_path_on_cpu):
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
