"""Hub weights as a pretraining source (`pretrain.source='timm:<name>'`) and the `paper` profile,
offline: the tests write local weights files as a user would download them and tiny CIFAR-10 /
STL-10 files in their real formats (test_real_data), and timm's / torchvision's own loading code
reads them with the network blocked.
"""
from __future__ import annotations

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from test_offline import blocked_network
from test_real_data import write_cifar10, write_stl10
from transferlab.config import ParameterError
from transferlab.findings import feature_reuse, fe_vs_ft, invariance, lpft_ood
from transferlab.hub import HubRun, create_hub_model
from transferlab.zoo import pretrain

# A small cifar10 -> stl10 run of the paper profile's recipe, on timm's 371k-parameter test ViT.
TINY = {"source": "timm:test_vit", "target.train": 40, "target.val": 20, "target.test": 40, "ood_size": 30,
        "shifts": ("stl10", "contrast"), "finetune.epochs": 1, "ft_lrs": (0.01,), "lpft_lrs": (1e-4,),
        "probe_cs": (1.0,), "seeds": 2, "device": "cpu"}


def write_weights(folder, name: str, fmt: str = "safetensors", seed: int = 1) -> dict:
    """A timm model's state dict saved as `<name>.<fmt>` (what a user downloads); returns it."""
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in timm.create_model(name, pretrained=False).state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        save_file(state, str(folder / f"{name}.safetensors"))
    else:
        torch.save(state, folder / f"{name}.{fmt}")
    return state


@pytest.fixture
def weights(tmp_path):
    return tmp_path / "weights"   # conftest points TRANSFERLAB_WEIGHTS here


@pytest.mark.parametrize("name, fmt", [("test_vit", "safetensors"), ("test_resnet", "pth")])
def test_pretrained_weights_come_from_the_local_file(weights, name, fmt):
    state = write_weights(weights, name, fmt)
    with blocked_network() as attempts:
        run = pretrain(lpft_ood.config("ci", source=f"timm:{name}").pretrain, seed=0, device="cpu")
        model = run.load("hub")
        init = run.load("ep0")
    assert attempts == []
    assert isinstance(run, HubRun) and [c["name"] for c in run.checkpoints()] == ["ep0", "hub"]
    loaded = model.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not torch.equal(init.model.state_dict()[next(iter(state))], next(iter(state.values())))
    import timm
    torch.manual_seed(0)
    fresh = timm.create_model(name, pretrained=False).state_dict()
    assert all(torch.equal(init.model.state_dict()[k], v) for k, v in fresh.items()), "ep0 is the seed's random init"
    other = pretrain(lpft_ood.config("ci", source=f"timm:{name}").pretrain, seed=1, device="cpu").load("ep0")
    assert not torch.equal(other.model.state_dict()[next(iter(state))], init.model.state_dict()[next(iter(state))])


def test_hub_model_follows_the_model_api(weights):
    write_weights(weights, "test_vit")
    model = create_hub_model("timm:test_vit", pretrained=True).eval()
    x = torch.randn(4, 3, 32, 32)
    features = model.forward_features(x)           # 32 px inputs resized to the weights' 160 px
    assert features.shape == (4, model.num_features)
    model.reset_classifier(7)
    assert model(x).shape == (4, 7) and model.get_classifier().out_features == 7


def test_lpft_on_a_hub_source_cifar10_to_stl10(weights, tmp_path, monkeypatch):
    """The paper profile's path end to end on tiny files: LP, FT and LP-FT of hub weights on
    CIFAR-10, tested on STL-10 (nine shared classes, relabelled) and a corruption."""
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    write_cifar10(tmp_path / "data", monkeypatch)
    write_stl10(tmp_path / "data", monkeypatch)
    write_weights(weights, "test_vit")
    with blocked_network() as attempts:
        cfg = lpft_ood.config("paper", **TINY)
        results = lpft_ood.run(cfg, progress=False)
    assert attempts == []
    assert cfg.target.name == "cifar10" and cfg.pretrain.source == "timm:test_vit"
    assert set(results.units["checkpoint"]) == {"hub"}
    assert set(results.accuracy["set"]) == {"ID", "stl10", "contrast"}
    assert results.accuracy["accuracy"].between(0, 1).all()
    assert {"D1", "D2", "D3"} <= set(results.verdicts["claim"])


def test_stl10_shift_keeps_nine_classes_in_cifar10_indices(tmp_path, monkeypatch):
    from transferlab.data.real import load_real, stl10_as_cifar10

    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    write_stl10(tmp_path / "data", monkeypatch)
    stl, shifted = load_real("stl10"), stl10_as_cifar10()
    assert len(shifted) == (stl.labels != 7).sum()                    # no monkeys
    assert 6 not in shifted.labels                                     # no frogs either
    assert (shifted.labels[stl.labels[stl.labels != 7] == 2] == 1).all()   # car -> automobile
    assert shifted.classes[1] == "automobile"


@pytest.mark.parametrize("module, fragment", [(fe_vs_ft, "a checkpoint of every pretraining epoch"),
                                               (feature_reuse, "block outputs of the study's own"),
                                               (invariance, "inverts the blocks of the study's own ViT")])
def test_findings_that_cannot_use_hub_weights_say_why(weights, module, fragment):
    write_weights(weights, "test_vit")
    with pytest.raises(ParameterError, match=fragment) as err:
        module.config("ci", source="timm:test_vit")
    assert "timm:test_vit' is a hub model" in str(err.value) and "\n" not in str(err.value)


def test_corrupt_weights_file_is_one_line(weights):
    write_weights(weights, "test_vit")
    path = weights / "test_vit.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    run = pretrain(lpft_ood.config("ci", source="timm:test_vit").pretrain, seed=0, device="cpu")
    with pytest.raises(ParameterError, match="could not load its weights from .*test_vit.safetensors") as err:
        run.load("hub")
    assert "\n" not in str(err.value)


def test_online_opt_in_uses_the_hub_download(monkeypatch):
    """With TRANSFERLAB_ONLINE=1 and no local file, timm's hub download runs (here: blocked)."""
    monkeypatch.setenv("TRANSFERLAB_ONLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)   # huggingface_hub's retry back-off
    cfg = lpft_ood.config("ci", source="timm:test_vit")   # accepted: it may download
    with blocked_network() as attempts:
        with pytest.raises(ParameterError, match="could not load its weights from timm's hub"):
            pretrain(cfg.pretrain, seed=0, device="cpu").load("hub")
    assert attempts, "the download path never tried the network"


def test_paper_profile_offline_says_what_it_needs_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "empty"))
    with pytest.raises(ParameterError) as err:
        lpft_ood.config("paper")
    message = str(err.value)
    assert "\n" not in message
    for needed in ("resnet50.tv_in1k weights", "CIFAR-10 files", "STL-10 files", "TRANSFERLAB_ONLINE=1"):
        assert needed in message
