"""The two-layer linear toy of Kumar et al. (2022): the properties the chapter shows."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab.theory import linear_toy

EPS = (0.1, 0.03, 0.01, 0.003)


@pytest.fixture(scope="module")
def table():
    return linear_toy.sweep(eps_values=(*EPS, 0.0), seeds=2)


def test_fine_tuning_never_moves_features_outside_the_id_span(table):
    """Delta B P_{S_perp} = 0 to float precision, although FT moves B by O(1)."""
    ft = table[table["method"] == "FT"]
    assert (ft["delta_B"] > 0.1).all()
    moved = table[table["method"] != "LP"]
    assert (moved["delta_B_perp"] < 1e-12).all()
    assert (table.loc[table["method"] == "LP", "delta_B"] == 0).all()


def test_ood_error_ratio_ft_over_lp_grows_as_pretraining_error_shrinks(table):
    ratio = linear_toy.ood_ratio(table)["FT / LP"]          # ordered by decreasing eps
    assert list(ratio.index) == sorted(EPS, reverse=True)
    assert (np.diff(ratio.to_numpy()) > 0).all()
    assert ratio.iloc[0] > 10 and ratio.iloc[-1] > 100 * ratio.iloc[0]


def test_lpft_ood_error_vanishes_at_zero_pretraining_error(table):
    at_zero = table[table["eps"] == 0.0].set_index(["seed", "method"])["ood_error"]
    assert (at_zero.xs("LP-FT", level="method") < 1e-20).all()
    assert (at_zero.xs("FT", level="method") > 0.05).all()   # FT stays wrong OOD even with perfect features


def test_ft_fits_id_while_lp_does_not_when_features_are_imperfect(table):
    """The D1 side of the story: FT reaches zero ID error; LP is limited by B0's error."""
    imperfect = table[table["eps"] > 0].set_index(["eps", "seed", "method"])["id_error"]
    assert (imperfect.xs("FT", level="method") < 1e-10).all()
    assert (imperfect.xs("LP", level="method") > 1e-8).all()


def test_gradient_rows_lie_in_the_id_span():
    problem = linear_toy.make_problem(seed=3)
    rng = np.random.default_rng(0)
    v, B = rng.normal(size=4), rng.normal(size=(4, 20))
    v1, B1 = linear_toy.fine_tune(problem, v, B, steps=1)
    assert np.abs((B1 - B) @ problem.P_perp).max() < 1e-14
    assert np.abs(B1 - B).max() > 1e-6


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="k <= m < d"):
        linear_toy.make_problem(d=10, k=4, m=10)
