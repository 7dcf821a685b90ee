"""Determinism (issue 7): the `ci` profile of finding 02, computed twice from empty caches on one
machine, gives identical results (every measurement, summary and verdict, bit for bit), without
touching the network.

One pretraining seed instead of the profile's two: the second seed runs the same code paths and
would double the test's time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_offline import blocked_network
from transferlab.findings import fe_vs_ft


def _compute(cache, monkeypatch) -> fe_vs_ft.Results:
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(cache))
    with blocked_network() as attempts:
        results = fe_vs_ft.run(fe_vs_ft.config("ci", seeds=1, device="cpu"), progress=False)
    assert attempts == [], f"tried to reach the network: {attempts}"
    return results


@pytest.mark.slow  # two ci runs of finding 02 from scratch (about 30 s on 2 free cores)
def test_ci_profile_twice_gives_identical_results(tmp_path, monkeypatch):
    first = _compute(tmp_path / "first", monkeypatch)
    second = _compute(tmp_path / "second", monkeypatch)
    assert all(any((tmp_path / run / "zoo").iterdir()) for run in ("first", "second"))  # each trained its own
    for table in ("checkpoints", "summary", "verdicts"):
        pd.testing.assert_frame_equal(getattr(first, table), getattr(second, table), check_exact=True)
    assert first.spectra.keys() == second.spectra.keys()
    for seed, spectra in first.spectra.items():
        assert spectra.keys() == second.spectra[seed].keys()
        assert all(np.array_equal(s, second.spectra[seed][name]) for name, s in spectra.items())
