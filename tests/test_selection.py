from operator import itemgetter

import torch

from transferlab.config import ModelConfig, TrainConfig
from transferlab.data.device import DeviceData
from transferlab.models import create_model
from transferlab.selection import best_on_validation, finetune_each_lr


def test_best_on_validation_takes_the_highest_and_the_earliest_on_a_tie():
    runs = [{"lr": 0.01, "val_acc": 0.5}, {"lr": 0.03, "val_acc": 0.7}, {"lr": 0.1, "val_acc": 0.7},
            {"lr": 0.3, "val_acc": 0.6}]
    assert best_on_validation(runs, itemgetter("val_acc"))["lr"] == 0.03
    assert best_on_validation(reversed(runs), itemgetter("val_acc"))["lr"] == 0.1


def test_every_lr_starts_from_the_same_seeded_model_and_differs_only_in_lr(stripes):
    """`start()` initialises from the global RNG and moves it on: only seeding before every
    `start()` gives every lr the same initial weights, so that two runs at one lr end with the
    same weights, and a run at another lr does not."""
    data = DeviceData.from_arrays(stripes, "cpu")

    def start() -> torch.nn.Module:
        model = create_model(ModelConfig(width=8), stripes.num_classes)
        torch.rand(100)   # the global RNG moves on, as a loaded checkpoint's fresh head would move it
        return model

    cfg = TrainConfig(epochs=1, batch_size=128, lr=1.0)
    runs = list(finetune_each_lr(start, data, cfg, (3e-3, 3e-3, 1e-2), seed=7, desc="test"))
    assert [lr for lr, _ in runs] == [3e-3, 3e-3, 1e-2]
    weights = [torch.cat([p.detach().flatten() for p in model.parameters()]) for _, model in runs]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])
