import numpy as np
import pytest

from transferlab.metrics.spectrum import (main_part_size, normalised_similarity, project, spectrum,
                                          subspace_similarity)
from transferlab.probe import fit_linear_probe
from transferlab.stats import (CORRELATION_RANGE, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, mean_ci, verdict_above,
                              verdict_below)


def test_probe_separates_a_linearly_separable_toy():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (4, 10))
    y = rng.integers(0, 4, 600)
    x = (centres[y] + rng.normal(0, 0.5, (600, 10))) * 10 + 100  # offset and scale: standardisation matters
    probe = fit_linear_probe(x[:400], y[:400], x[400:500], y[400:500], Cs=(0.01, 1.0, 100.0))
    assert probe.accuracy(x[500:], y[500:]) >= 0.98
    assert probe.C in (0.01, 1.0, 100.0)


def test_mean_ci_matches_hand_computation():
    est = mean_ci([1.0, 2.0, 3.0])
    # mean 2, sd 1, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3) = 2.4841
    assert est.mean == 2.0 and est.sd == 1.0
    assert est.hi - est.mean == pytest.approx(2.4841, abs=1e-4)


def test_bounds_cut_the_interval_to_the_statistic_range():
    # Spearman rhos 1, 1, -0.2: mean 0.6, sd 0.6928, half-width 4.3027 * 0.6928 / sqrt(3) = 1.7211.
    rhos = [1.0, 1.0, -0.2]
    free, cut = mean_ci(rhos), mean_ci(rhos, bounds=CORRELATION_RANGE)
    assert (free.lo, free.hi) == pytest.approx((0.6 - 1.7211, 0.6 + 1.7211), abs=1e-4)
    assert (cut.mean, cut.lo, cut.hi, cut.sd) == (free.mean, -1.0, 1.0, free.sd)
    inside = mean_ci([0.5, 0.6, 0.7], bounds=CORRELATION_RANGE)   # an interval inside the range is left alone
    assert (inside.lo, inside.hi) == (mean_ci([0.5, 0.6, 0.7]).lo, mean_ci([0.5, 0.6, 0.7]).hi)


def test_verdict_is_three_way():
    assert verdict_above(mean_ci([1.0, 1.1, 0.9]), 0.5) == REPRODUCED
    assert verdict_above(mean_ci([0.1, 0.2, 0.0]), 0.5) == NOT_REPRODUCED
    assert verdict_above(mean_ci([0.0, 1.0, 0.5]), 0.5) == INCONCLUSIVE
    assert verdict_above(mean_ci([0.9]), 0.5) == INCONCLUSIVE  # one seed: no interval
    assert verdict_above(mean_ci([0.9]), float("inf")) == INCONCLUSIVE  # a '2 SD' threshold from one seed
    assert verdict_below(mean_ci([0.1, 0.2, 0.0]), 0.5) == REPRODUCED
    assert verdict_below(mean_ci([1.0, 1.1, 0.9]), 0.5) == NOT_REPRODUCED
    assert verdict_below(mean_ci([0.9]), 0.5) == INCONCLUSIVE


def test_an_undefined_seed_makes_the_verdict_inconclusive_and_says_so():
    # Without the NaN seed the other three give 1.0 [0.975, 1.025]: clearly above 0.5 (and below 2).
    est = mean_ci([1.0, 0.99, 1.01, float("nan")])
    assert (est.n, est.undefined) == (3, 1) and est.mean == pytest.approx(1.0)
    assert verdict_above(est, 0.5) == INCONCLUSIVE and verdict_below(est, 2.0) == INCONCLUSIVE
    assert est.formatted() == "1.000 [0.975, 1.025] (1 of 4 seeds undefined)"
    assert mean_ci([1.0, 2.0]).formatted("+.1f") == "+1.5 [-4.9, +7.9]"


def test_main_part_size():
    assert main_part_size(np.array([8.0, 1.0, 1.0]), 0.8) == 1
    assert main_part_size(np.array([4.0, 4.0, 2.0]), 0.8) == 2
    assert main_part_size(np.array([1.0, 1.0, 1.0, 1.0, 1.0]), 0.8) == 4


def test_spectrum_split_on_a_hand_case():
    # Singular values sqrt(50) and sqrt(2): the first holds 0.83 of the mass, so k = 1 at 80%.
    f = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 1.0], [0.0, -1.0]]) + 3
    spec = spectrum(f, 0.8)
    assert spec.k == 1 and spec.S == pytest.approx([50 ** 0.5, 2 ** 0.5])
    assert np.allclose(project(f, spec, "main"), [[5, 0], [-5, 0], [0, 0], [0, 0]])
    assert np.allclose(project(f, spec, "residual"), [[0, 0], [0, 0], [0, 1], [0, -1]])
    assert spectrum(f, 0.9).k == 2
    with pytest.raises(ValueError, match="'part'"):
        project(f, spec, "middle")


def test_subspace_similarity_hand_cases():
    e = np.eye(5)
    assert subspace_similarity(e[:, :2], e[:, :2]) == pytest.approx(1.0)
    assert subspace_similarity(e[:, :2], e[:, 2:4]) == pytest.approx(0.0)
    rotated = np.stack([e[:, 0], (e[:, 1] + e[:, 2]) / np.sqrt(2)], 1)
    assert subspace_similarity(e[:, :2], rotated) == pytest.approx(0.75)  # cos^2: 1 and 1/2
    assert normalised_similarity(e[:, :2], e[:, :2]) == pytest.approx(1.0)
    assert normalised_similarity(e[:, :2], rotated) == pytest.approx((0.75 - 2 / 5) / (1 - 2 / 5))  # chance 2 / 5
    rng = np.random.default_rng(0)
    a = np.linalg.qr(rng.normal(size=(2000, 20)))[0]
    b = np.linalg.qr(rng.normal(size=(2000, 20)))[0]
    assert abs(normalised_similarity(a, b)) < 0.002  # random subspaces score ~0 (raw similarity: ~20 / 2000)
