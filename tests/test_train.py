import copy

import pytest
import torch
from safetensors.torch import load_file

from transferlab.config import ModelConfig, ParameterError, TrainConfig
from transferlab.data.device import DeviceData, random_translate, standardize
from transferlab.host_reads import HostReads
from transferlab.models import create_model
from transferlab.train import accuracy, early_checkpoint_steps, train

CFG = TrainConfig(epochs=3, batch_size=64, lr=3e-3)


def test_standardize_is_per_image():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    z = standardize(x)
    assert torch.allclose(z.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(z.std(dim=(1, 2, 3)), torch.ones(4), atol=0.01)


def test_early_checkpoints_land_on_their_own_steps_inside_epoch_1():
    assert early_checkpoint_steps((0.5, 0.25, 1.0, 2.0), steps=8) == {2: 0.25, 4: 0.5}  # whole epochs are not early
    assert early_checkpoint_steps((0.1,), steps=8) == {1: 0.1}                           # never step 0
    with pytest.raises(ParameterError, match=r"'speed_fractions'.*2 step\(s\) here \(0.5 of it rounds to step 1\)"):
        early_checkpoint_steps((0.25, 0.5), steps=2, parameter="speed_fractions")       # both on step 1
    with pytest.raises(ParameterError, match="rounds to step 8"):
        early_checkpoint_steps((0.95,), steps=8)                                        # that is 'ep1'


def test_train_refuses_colliding_early_checkpoints_before_any_step(stripes, tmp_path):
    data = DeviceData.from_arrays(stripes, "cpu")
    model = create_model(ModelConfig(), stripes.num_classes)
    before = copy.deepcopy(model.state_dict())
    two_steps = TrainConfig(epochs=1, batch_size=len(stripes.labels) // 2)
    with pytest.raises(ParameterError, match="'early_checkpoints'"):
        train(model, data, two_steps, seed=0, checkpoint_dir=tmp_path, early_checkpoints=(0.25, 0.5))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not list(tmp_path.iterdir())


def test_random_translate_shifts_content_within_bounds():
    x = torch.zeros(16, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 3, 3] = 255
    out = random_translate(x, torch.Generator().manual_seed(0), max_shift=2)
    rows, cols = (out[:, 0] == 255).nonzero()[:, 1], (out[:, 0] == 255).nonzero()[:, 2]
    assert (out == 255).sum() == 16  # one bright pixel per image, none lost
    assert rows.min() >= 1 and rows.max() <= 5 and cols.min() >= 1 and cols.max() <= 5
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 1  # not all shifted alike


def test_training_lowers_the_loss_and_learns(stripes):
    data = DeviceData.from_arrays(stripes, "cpu")
    torch.manual_seed(0)
    model = create_model(ModelConfig(), stripes.num_classes)
    before = accuracy(model, data)
    result = train(model, data, CFG, seed=0)
    assert result.losses[-1] < result.losses[0]
    assert accuracy(model, data) > max(0.6, before + 0.3)


@pytest.mark.parametrize("path", ["fp32", "fast path"])
def test_resume_reproduces_an_uninterrupted_run(path, stripes, tmp_path, request):
    """Also on the CUDA fast path (run on the CPU): checkpoints of a channels_last model save
    (safetensors needs contiguous tensors) and resume to the same weights."""
    if path == "fast path":
        request.getfixturevalue("fast_path_on_cpu")
    data = DeviceData.from_arrays(stripes, "cpu")
    cfg = TrainConfig(epochs=3, batch_size=128, lr=3e-3)   # 4 steps an epoch, a small model: bf16 is slow here

    def fresh():
        torch.manual_seed(0)
        return create_model(ModelConfig(width=8), stripes.num_classes)

    train(fresh(), data, cfg, seed=1, checkpoint_dir=tmp_path / "a", early_checkpoints=(0.5,))

    class Interrupt(Exception):
        pass

    def stop_at_epoch_2(name, epoch):
        if epoch == 2:
            raise Interrupt
        return {}

    with pytest.raises(Interrupt):
        train(fresh(), data, cfg, seed=1, checkpoint_dir=tmp_path / "b", early_checkpoints=(0.5,),
              on_checkpoint=stop_at_epoch_2)
    assert not (tmp_path / "b" / "ep3.safetensors").exists()
    result = train(fresh(), data, cfg, seed=1, checkpoint_dir=tmp_path / "b", early_checkpoints=(0.5,))
    assert result.checkpoints == ["ep0.5", "ep1", "ep2", "ep3"]
    a, b = load_file(tmp_path / "a" / "ep3.safetensors"), load_file(tmp_path / "b" / "ep3.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_freeze_bn_keeps_batchnorm_statistics_and_eval_mode(stripes):
    """freeze_bn: BatchNorm layers run in eval mode, their running statistics never change
    (no precise-BN recompute either), while every other weight trains."""
    data = DeviceData.from_arrays(stripes, "cpu")
    torch.manual_seed(0)
    model = create_model(ModelConfig(), stripes.num_classes)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = []
    hooks = [bn.register_forward_pre_hook(lambda m, _: modes.append(m.training)) for bn in bns]
    train(model, data, TrainConfig(epochs=1, batch_size=64, lr=3e-3), seed=0, freeze_bn=True)
    for h in hooks:
        h.remove()
    after = {k: v.clone() for k, v in model.state_dict().items()}
    assert modes and not any(modes)
    stats = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert not torch.equal(before["stem.0.weight"], after["stem.0.weight"])
    # without the option the statistics move (the default is unchanged)
    train(model, data, TrainConfig(epochs=1, batch_size=64, lr=3e-3), seed=0)
    assert not all(torch.equal(after[k], model.state_dict()[k]) for k in stats if "running" in k)


def test_batches_are_standardised_and_aligned(stripes):
    from transferlab.data.device import batches

    data = DeviceData.from_arrays(stripes, "cpu")
    seen = []
    for x, y in batches(data, 100, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and len(x) == len(y) <= 100
        assert abs(x.mean().item()) < 1e-3 and x.abs().max() < 20
        seen.append(y)
    assert sorted(torch.cat(seen).tolist()) == sorted(stripes.labels.tolist())  # every image once
    assert data.images.dtype == torch.uint8  # stays uint8 on the device


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_precise_bn_stops_early_with_the_full_passes_statistics(arch, stripes):
    """recompute_bn_stats ends each pass after the last BatchNorm: the statistics equal those of
    full forward passes bit for bit, no transformer block runs, and no hook is left behind."""
    from torch import nn

    from transferlab.data.device import batches
    from transferlab.train import recompute_bn_stats

    torch.manual_seed(0)
    model = create_model(ModelConfig(arch=arch, width=32, depth=8 if arch == "resnet" else 2), 8)
    data = DeviceData.from_arrays(stripes, "cpu")
    reference = copy.deepcopy(model)
    bns = [m for m in reference.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        reference.train()
        gen = torch.Generator().manual_seed(3)
        for i, (x, _) in enumerate(batches(data, 256, shuffle=True, generator=gen)):
            if i == 2:
                break
            reference(x)
    blocks_ran = []
    if arch == "vit":
        model.blocks[0].register_forward_hook(lambda *args: blocks_ran.append(1))
    with HostReads() as reads:   # (momentum None would read each layer's batch count: a GPU sync per layer)
        recompute_bn_stats(model, data, batch_size=256, num_batches=2, seed=3)
    assert reads.total == 0, reads.sites
    want = {k: v for k, v in reference.state_dict().items() if "running" in k or "num_batches" in k}
    got = model.state_dict()
    assert want and all(torch.equal(got[k], v) for k, v in want.items())
    assert blocks_ran == []
    assert all(not m._forward_hooks for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_training_steps_read_nothing_back_from_the_device(arch, stripes, fast_path_on_cpu):
    """On the fast path (the GPU's) the loop reads the device once per epoch, for the epoch's mean
    loss: no step waits for the GPU, nor does the precise-BN pass at the end."""
    data = DeviceData.from_arrays(stripes, "cpu")
    model = create_model(ModelConfig(arch=arch, width=8 if arch == "resnet" else 16, depth=8 if arch == "resnet" else 2),
                         stripes.num_classes)
    cfg = TrainConfig(epochs=2, batch_size=32)
    with HostReads() as reads:
        result = train(model, data, cfg, seed=0)
    assert len(data) // cfg.batch_size > 2 and len(result.losses) == 2
    assert reads.total == cfg.epochs, reads.sites


def test_a_resumed_run_counts_the_training_time_of_the_process_it_resumed_from(stripes, tmp_path):
    """Every checkpoint records the run's training seconds so far; a resumed run starts from the
    last one's, so a run stopped at a device's time limit and finished later still reports (and the
    zoo charges) all its compute. Hand-checkable: the stopped process spent over a second at ep1."""
    import time

    from transferlab.cache import read_json

    data = DeviceData.from_arrays(stripes, "cpu")
    cfg = TrainConfig(epochs=3, batch_size=128, lr=3e-3)

    class Interrupt(Exception):
        pass

    def slow_then_stop(name, epoch):
        if epoch == 1:
            time.sleep(1.0)
        if epoch == 2:
            raise Interrupt
        return {}

    torch.manual_seed(0)
    with pytest.raises(Interrupt):
        train(create_model(ModelConfig(width=8), stripes.num_classes), data, cfg, seed=1,
              checkpoint_dir=tmp_path, on_checkpoint=slow_then_stop)
    before = read_json(tmp_path / "ep1.json")["train_seconds"]
    assert before >= 1.0
    torch.manual_seed(0)
    result = train(create_model(ModelConfig(width=8), stripes.num_classes), data, cfg, seed=1, checkpoint_dir=tmp_path)
    assert result.seconds_before == before
    assert read_json(tmp_path / "ep3.json")["train_seconds"] >= before
