"""Linear CKA: full batch (Kornblith et al. 2019) and minibatch unbiased HSIC (Nguyen et al. 2021)."""
import itertools

import pytest
import torch

from transferlab.metrics.cka import MinibatchCKA, linear_cka, minibatch_cka, unbiased_hsic


def _data(n=1200, d=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 16, generator=g) + 1.5 * torch.randn(n, 16, generator=g)
    return x, y, g


def _hsic_by_definition(k: torch.Tensor, l: torch.Tensor) -> float:
    """Song et al. (2012)'s U-statistic written out: the mean over ordered 4-tuples of distinct
    examples (t, u, v, w) of k_tu l_tu + k_tu l_vw - 2 k_tu l_tv."""
    terms = [k[t, u] * l[t, u] + k[t, u] * l[v, w] - 2 * k[t, u] * l[t, v]
             for t, u, v, w in itertools.permutations(range(len(k)), 4)]
    return float(sum(terms) / len(terms))


def test_unbiased_hsic_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    k, l = x @ x.T, (x[:, :2] + y) @ (x[:, :2] + y).T
    assert unbiased_hsic(k[None], l[None])[0, 0].item() == pytest.approx(_hsic_by_definition(k, l), rel=1e-9)
    expected = _hsic_by_definition(k, l) / (_hsic_by_definition(k, k) * _hsic_by_definition(l, l)) ** 0.5
    assert linear_cka(x, x[:, :2] + y, debiased=True) == pytest.approx(expected, rel=1e-9)


def test_biased_cka_of_one_feature_is_the_squared_correlation():
    # x = 1, 2, 3, 4 and y = 1, 3, 2, 4: correlation 4 / 5 = 0.8
    x, y = torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([[1.0], [3.0], [2.0], [4.0]])
    assert linear_cka(x, y) == pytest.approx(0.64)


def test_biased_cka_with_more_features_than_examples_is_the_feature_space_formula():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(6, 20, generator=g, dtype=torch.float64), torch.randn(6, 30, generator=g, dtype=torch.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = (yc.T @ xc).square().sum() / torch.sqrt((xc.T @ xc).square().sum() * (yc.T @ yc).square().sum())
    assert linear_cka(x, y) == pytest.approx(want.item(), rel=1e-12)   # computed from the 6 x 6 Gram matrices


@pytest.mark.parametrize("debiased", [False, True])
def test_identical_inputs_give_one(debiased):
    x, _, _ = _data()
    assert linear_cka(x, x, debiased) == pytest.approx(1.0, abs=1e-9)


def test_minibatch_of_identical_inputs_gives_one():
    x, _, _ = _data()
    assert minibatch_cka([x], [x], 200)[0, 0].item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transform_and_isotropic_scaling(debiased):
    x, y, g = _data()
    q, _ = torch.linalg.qr(torch.randn(24, 24, generator=g, dtype=torch.float64))
    base = linear_cka(x, y, debiased)
    assert 0.2 < base < 0.95
    assert linear_cka((x.double() @ q) * 7.5, y, debiased) == pytest.approx(base, abs=1e-9)
    assert linear_cka(x, 0.01 * y, debiased) == pytest.approx(base, abs=1e-9)


def test_minibatch_agrees_with_full_batch_on_random_data():
    x, y, g = _data(n=4000)
    z = torch.randn(4000, 40, generator=g)
    feats_a, feats_b = [x, y.reshape(4000, 4, 4)], [y, z]  # any trailing shape is flattened
    mini = minibatch_cka(feats_a, feats_b, batch_size=500)
    full = torch.tensor([[linear_cka(a, b, debiased=True) for b in feats_b] for a in feats_a],
                        dtype=torch.float64)
    assert mini.shape == (2, 2)
    assert torch.allclose(mini.double(), full, atol=0.03)
    # one batch holding everything is exactly the full-batch unbiased estimator
    one = minibatch_cka(feats_a, feats_b, batch_size=4000)
    assert torch.allclose(one.double(), full, atol=1e-5)
    # and the biased full-batch CKA is close on this much data
    assert linear_cka(x, y) == pytest.approx(full[0, 0].item(), abs=0.02)


def test_all_layer_pairs_match_pairwise_hsic():
    g = torch.Generator().manual_seed(1)
    grams = [(f := torch.randn(30, d, generator=g)) @ f.T for d in (3, 5, 8)]
    stacked = unbiased_hsic(torch.stack(grams), torch.stack(grams[:2]))
    for i, k in enumerate(grams):
        for j, l in enumerate(grams[:2]):
            assert stacked[i, j].item() == pytest.approx(unbiased_hsic(k[None], l[None])[0, 0].item(), rel=1e-9)


def test_accumulator_needs_data_and_enough_examples():
    with pytest.raises(ValueError):
        MinibatchCKA().value()
    with pytest.raises(ValueError, match="at least 4"):
        MinibatchCKA().update([torch.randn(3, 2)], [torch.randn(3, 2)])
