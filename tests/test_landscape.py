"""Linear-path barriers and module criticality on a tiny trained ResNet."""
from collections import OrderedDict

import numpy as np
import pytest
import torch

from transferlab.config import ModelConfig, TrainConfig
from transferlab.data.device import DeviceData
from transferlab.host_reads import HostReads
from transferlab.metrics.agreement import independent_jaccard, mistake_jaccard
from transferlab.metrics.landscape import (criticality_map, error_along_path, interpolate_state, loss_barrier,
                                           module_groups)
from transferlab.models import create_model
from transferlab.train import accuracy, recompute_bn_stats, train


@pytest.fixture(scope="module")
def trained(stripes_module):
    data = DeviceData.from_arrays(stripes_module, "cpu")
    torch.manual_seed(0)
    model = create_model(ModelConfig(width=8), 8)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, data, TrainConfig(epochs=2, batch_size=64, augment=False, lr=3e-3), seed=0)
    final = {k: v.clone() for k, v in model.state_dict().items()}
    return model, data, init, final


@pytest.fixture(scope="module")
def stripes_module():
    from transferlab.data.arrays import ArrayDataset

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 256)
    images = rng.integers(0, 60, (256, 32, 32, 3))
    for i, y in enumerate(labels):
        images[i, 4 * y:4 * y + 3] += 150
    return ArrayDataset(images.clip(0, 255).astype(np.uint8), labels.astype(np.int64), tuple("abcdefgh"))


def test_barrier_is_zero_for_identical_endpoints(trained):
    model, data, _, final = trained
    lams, errors = error_along_path(model, final, final, data, data, points=5)
    assert np.allclose(lams, np.linspace(0, 1, 5))
    assert np.allclose(errors, errors[0])
    assert loss_barrier(errors) == 0.0


def test_barrier_definition():
    assert loss_barrier([0.1, 0.4, 0.2]) == pytest.approx(0.4 - 0.15)
    assert loss_barrier([0.3, 0.2, 0.1]) == pytest.approx(0.1)


def test_interpolation_ends_are_the_endpoints(trained):
    _, _, init, final = trained
    for lam, ref in ((0.0, init), (1.0, final)):
        state = interpolate_state(init, final, lam)
        assert all(torch.allclose(state[k].float(), ref[k].float()) for k in ref if ref[k].is_floating_point())
    assert torch.equal(interpolate_state(init, final, 0.5)["stem.1.num_batches_tracked"],
                       init["stem.1.num_batches_tracked"])


def test_criticality_alpha_zero_without_noise_is_the_trained_error(trained):
    model, data, init, final = trained
    model.load_state_dict(final)
    trained_error = 1 - accuracy(model, data)
    modules, errors = criticality_map(model, final, init, data, data, alphas=(0.0, 1.0), sigma=0.0)
    assert modules == ["stem", "blocks.0", "blocks.1", "blocks.2", "head"]
    assert errors.shape == (5, 2)
    assert np.allclose(errors[:, 0], trained_error)
    assert trained_error < 0.5 and errors[-1, 1] > trained_error  # a rewound head is random: critical
    assert all(torch.equal(v, final[k]) for k, v in model.state_dict().items())  # weights restored


@pytest.fixture(params=["resnet", "vit"])
def two_states(request, trained, stripes_module):
    """(model, data, init, final): the trained ResNet, or a ViT between two random initialisations."""
    if request.param == "resnet":
        return trained
    torch.manual_seed(1)
    model = create_model(ModelConfig(arch="vit", width=16, depth=3, heads=2), 8)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    final = {k: v.clone() for k, v in create_model(ModelConfig(arch="vit", width=16, depth=3, heads=2), 8)
             .state_dict().items()}
    return model, DeviceData.from_arrays(stripes_module, "cpu"), init, final


def test_criticality_with_noise_is_its_definition_cell_by_cell(two_states):
    """Each cell is the mean error over draws of the model with one module moved toward its init plus
    noise, BN statistics recomputed, evaluated with full forward passes; the noise is drawn per tensor
    in (module, alpha, draw) order. The map (which runs only the stages from each module on) is this
    loop's, bit for bit."""
    model, data, init, final = two_states
    alphas, sigma, draws = (0.0, 0.5, 1.0), 0.1, 2
    modules, errors = criticality_map(model, final, init, data, data, alphas=alphas, sigma=sigma, draws=draws,
                                      seed=5, bn_batches=1)
    gen, want = torch.Generator().manual_seed(5), np.zeros((len(modules), len(alphas)))
    for m, params in enumerate(module_groups(model).values()):
        for i, alpha in enumerate(alphas):
            errs = []
            for _ in range(draws):
                state = dict(final)
                for p in params:
                    rms = final[p].float().square().mean().sqrt()
                    state[p] = torch.lerp(final[p], init[p], alpha) + sigma * rms * torch.randn(final[p].shape, generator=gen)
                model.load_state_dict(state)
                recompute_bn_stats(model, data, num_batches=1, seed=0)
                errs.append(1.0 - accuracy(model, data))
            want[m, i] = np.mean(errs)
    np.testing.assert_array_equal(errors, want)


def test_criticality_runs_the_stages_before_a_module_once_not_per_cell(trained):
    """Moving blocks.0 and later leaves the stem's output unchanged: it is computed once and reused, so
    the stem runs for its own cells and to advance past it, not for the other modules' 6 cells."""
    model, data, init, final = trained
    calls = []
    hook = model.stem.register_forward_hook(lambda *args: calls.append(1))
    criticality_map(model, final, init, data, data, alphas=(0.5, 1.0), sigma=0.0, bn_batches=1, batch_size=512)
    hook.remove()
    passes = 2   # per cell: one precise-BN batch and one evaluation batch (256 images)
    assert len(calls) == 1 + 2 * passes + passes   # the final weights' BN pass, the stem's 2 cells, advancing


def test_criticality_does_not_depend_on_the_order_of_the_modules(trained):
    """Modules given from the head back make every cell start again from the input: the same map."""
    model, data, init, final = trained
    groups = module_groups(model)
    kwargs = {"alphas": (0.5, 1.0), "sigma": 0.0, "bn_batches": 1}
    forward_order = criticality_map(model, final, init, data, data, **kwargs)[1]
    backward = criticality_map(model, final, init, data, data, modules=OrderedDict(reversed(groups.items())), **kwargs)
    np.testing.assert_array_equal(backward[1], forward_order[::-1])


def test_paths_and_maps_read_the_device_once(trained):
    """Every point's error stays on the device until the whole path or map is done: one read (one GPU
    sync) for 5 points, or for 5 modules x 3 alphas x 2 draws, not one per evaluation."""
    model, data, init, final = trained
    with HostReads() as reads:
        error_along_path(model, init, final, data, data, points=5, bn_batches=1)
    assert reads.total == 1, reads.sites
    with HostReads() as reads:
        criticality_map(model, final, init, data, data, alphas=(0.0, 0.5, 1.0), sigma=0.1, draws=2, bn_batches=1)
    assert reads.total == 1, reads.sites


def test_module_groups_cover_every_parameter(trained):
    model = trained[0]
    groups = module_groups(model)
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))


def test_mistake_overlap():
    labels = np.array([0, 1, 2, 3])
    assert mistake_jaccard([1, 1, 2, 0], [1, 0, 2, 0], labels) == pytest.approx(2 / 3)  # {0, 3} vs {0, 1, 3}
    assert mistake_jaccard(labels, labels, labels) == 1.0
    assert independent_jaccard(0.5, 0.5) == pytest.approx(0.25 / 0.75)
