"""Finding 04 (LP-FT): the LP head folded into the network, feature distortion, config, verdicts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from transferlab.config import ModelConfig, ParameterError
from transferlab.data.device import DeviceData
from transferlab.findings import lpft_ood
from transferlab.metrics.distortion import feature_distortion
from transferlab.models import create_model
from transferlab.probe import fit_linear_probe
from transferlab.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED
from transferlab.train import extract_features, predict


def test_lpft_head_predicts_exactly_like_the_linear_probe(stripes):
    """Before fine-tuning starts, the network with the folded head *is* the LP classifier."""
    data = DeviceData.from_arrays(stripes, "cpu")
    torch.manual_seed(0)
    model = create_model(ModelConfig(), 50)
    model.eval()
    feats = extract_features(model, data).numpy()
    labels = stripes.labels
    probe = fit_linear_probe(feats[:300], labels[:300], feats[300:400], labels[300:400], (0.1, 1.0, 10.0))
    model.reset_classifier(stripes.num_classes)
    lpft_ood.probe_as_linear(probe, model.get_classifier())
    with torch.no_grad():
        logits = model.get_classifier()(torch.from_numpy(feats)).numpy()
    expected = probe.classifier.decision_function((feats - probe.mean) / probe.std)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert np.array_equal(predict(model, data).numpy(), probe.predict(feats))


def test_probe_as_linear_rejects_a_layer_of_the_wrong_shape(stripes):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(80, 6)), np.arange(80) % 4
    probe = fit_linear_probe(x, y, x, y, (1.0,))
    with pytest.raises(ValueError, match="'layer' parameter must have weight shape"):
        lpft_ood.probe_as_linear(probe, torch.nn.Linear(6, 3))


def test_feature_distortion_on_a_hand_computed_case():
    before = np.array([[0.0, 0.0], [1.0, 1.0]])
    after = np.array([[3.0, 4.0], [1.0, 1.0]])
    # squared changes 25 and 0: mean 12.5; mean squared norm before: (0 + 2) / 2 = 1
    assert feature_distortion(before, after) == 12.5
    assert feature_distortion(before, after, relative=True) == 12.5
    assert feature_distortion(2 * before, 2 * after, relative=True) == 12.5
    assert feature_distortion(before, before) == 0.0
    with pytest.raises(ValueError, match="'after' parameter"):
        feature_distortion(before, after[:1])


def test_config_profiles_use_the_glyphs_plus_digits_source():
    for profile in ("ci", "cpu", "gpu"):
        cfg = lpft_ood.config(profile, device="cpu")
        assert cfg.pretrain.source == "glyphs+digits"
        assert cfg.seeds >= (2 if profile == "ci" else 3)
    cpu = lpft_ood.config("cpu", device="cpu")
    assert max(cpu.lpft_lrs) < max(cpu.ft_lrs) and min(cpu.lpft_lrs) < min(cpu.ft_lrs)
    assert {lpft_ood.SHIFTS[s].kind for s in cpu.shifts} == {"covered", "unseen"}


@pytest.mark.parametrize("params, parameter", [
    ({"shifts": ("fog",)}, "'shifts'"),
    ({"ood_size": 5000}, "'ood_size'"),
    ({"lpft_lrs": ()}, "'lpft_lrs'"),
    ({"finetune.lrr": 0.1}, "Unknown parameter 'finetune.lrr'"),
])
def test_bad_parameters_are_one_line_errors(params, parameter):
    with pytest.raises(ParameterError) as e:
        lpft_ood.config("ci", device="cpu", **params)
    assert parameter in str(e.value) and "\n" not in str(e.value)


def _accuracies(values: dict) -> pd.DataFrame:
    """A per-seed accuracy table from {(method, set): [acc per seed]}."""
    kinds = {"ID": "ID", "font-digits": "covered", "gaussian-noise": "unseen"}
    return pd.DataFrame([{"seed": i, "method": m, "set": s, "kind": kinds[s], "accuracy": a}
                         for (m, s), accs in values.items() for i, a in enumerate(accs)])


def test_verdicts_follow_the_paired_differences():
    cfg = lpft_ood.config("ci", device="cpu", shifts=("font-digits", "gaussian-noise"))
    acc = _accuracies({
        ("LP", "ID"): [0.90, 0.91, 0.89], ("FT", "ID"): [0.95, 0.96, 0.95], ("LP-FT", "ID"): [0.95, 0.955, 0.95],
        ("LP", "font-digits"): [0.80, 0.82, 0.81], ("FT", "font-digits"): [0.70, 0.71, 0.69],
        ("LP-FT", "font-digits"): [0.78, 0.80, 0.79],
        ("LP", "gaussian-noise"): [0.50, 0.52, 0.51], ("FT", "gaussian-noise"): [0.70, 0.71, 0.69],
        ("LP-FT", "gaussian-noise"): [0.70, 0.74, 0.70]})
    units = pd.DataFrame({"seed": [0, 1, 2], "source_acc": [0.9, 0.9, 0.9]})
    table = lpft_ood.verdicts(acc, units, cfg).set_index(["claim", "scope"])["verdict"]
    assert table["D1", "ID"] == REPRODUCED
    assert table["D2", "covered average"] == REPRODUCED and table["D2", "font-digits"] == REPRODUCED
    assert table["D2", "gaussian-noise"] == NOT_REPRODUCED and table["D2", "unseen average"] == NOT_REPRODUCED
    assert table["D3", "ID"] == REPRODUCED and table["D3", "font-digits"] == REPRODUCED
    assert table["D3", "gaussian-noise"] == INCONCLUSIVE
    claims = lpft_ood.claim_verdicts(lpft_ood.verdicts(acc, units, cfg)).set_index("claim")["verdict"]
    assert claims.to_dict() == {"D1": REPRODUCED, "D2": REPRODUCED, "D3": REPRODUCED}
    failed = lpft_ood.verdicts(acc, units.assign(source_acc=[0.9, 0.3, 0.9]), cfg)
    assert set(failed["verdict"]) == {INCONCLUSIVE}


def test_distortion_ratios():
    dist = pd.DataFrame([{"seed": s, "method": m, "set": name, "distortion": d}
                         for s in (0, 1) for m, by_set in {"FT": {"ID": 4.0, "ID train": 5.0, "x": 2.0},
                                                           "LP-FT": {"ID": 0.4, "ID train": 0.5, "x": 0.1}}.items()
                         for name, d in by_set.items()])
    table = lpft_ood.distortion_ratios(dist)
    assert table.loc["x", "FT: OOD / ID"] == pytest.approx(0.5)
    assert table.loc["x", "LP-FT: OOD / ID"] == pytest.approx(0.25)
    assert table.loc["ID", "LP-FT / FT"] == pytest.approx(0.1)
    assert table.loc["x", "LP-FT / FT"] == pytest.approx(0.05)
