"""Cross-findings: configs shared with the four chapters, the correlation statistics and verdict logic on
hand-made data, and the ci profile end to end (cache reuse, chapter 04's per-checkpoint units)."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from transferlab.config import ParameterError
from transferlab.findings import cross, fe_vs_ft, feature_reuse, lpft_ood
from transferlab.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


@pytest.mark.parametrize("profile", ["ci", "cpu", "gpu"])
def test_configs_are_the_chapters_own_on_the_shared_zoo(profile):
    cfg = cross.config(profile, device="cpu")
    # Same configs as chapters 02 and 03, so their cached units are found, not recomputed.
    assert cfg.fe_vs_ft == fe_vs_ft.config(profile, device="cpu")
    assert cfg.feature_reuse == feature_reuse.config(profile, device="cpu")
    assert cfg.lpft_ood.pretrain == cfg.fe_vs_ft.pretrain == cfg.invariance.pretrain
    assert cfg.lpft_ood.shifts == cross.COVERED_SHIFTS and len(cross.COVERED_SHIFTS) >= 1
    assert cfg.seeds == cfg.fe_vs_ft.seeds


def test_zoo_parameters_reach_every_finding():
    cfg = cross.config("ci", device="cpu", seeds=3, pretrain_epochs=3, checkpoint_epochs=[1, 2], stir_steps=7)
    assert cfg.seeds == cfg.fe_vs_ft.seeds == cfg.feature_reuse.seeds == 3
    assert cfg.fe_vs_ft.pretrain.train.epochs == cfg.lpft_ood.pretrain.train.epochs == 3
    assert cfg.feature_reuse.checkpoint_epochs == (1.0, 2.0) and cfg.invariance.steps == 7
    cfg = cross.config("ci", device="cpu", **{"pretrain.train.batch_size": 32})   # any other zoo setting
    assert {c.pretrain.train.batch_size for c in (cfg.fe_vs_ft, cfg.feature_reuse, cfg.lpft_ood, cfg.invariance)} == {32}


@pytest.mark.parametrize("params, message", [
    ({"profile": "fast"}, "The 'profile' parameter must be one of"),
    ({"checkpoint_epochs": (2.0,)}, "The 'checkpoint_epochs' parameter"),
    ({"stir_images": 10_000}, "The 'stir_images' parameter must be at most"),
    ({"bootstrap": 3}, "The 'bootstrap' parameter must be an int"),
    ({"stir_stepz": 3}, "Unknown parameter 'stir_stepz'"),
    # one zoo for all four: a finding's own pretraining setting would mislabel its cached units
    ({"lpft_ood.pretrain.train.epochs": 3}, "The 'lpft_ood.pretrain.train.epochs' parameter cannot be set for one"),
    ({"fe_vs_ft.pretrain.model.width": 32}, r"set 'pretrain.model.width' \(all four\)"),
])
def test_bad_parameters_fail_with_one_line(params, message):
    params = {"profile": "ci", "device": "cpu", **params}
    with pytest.raises(ParameterError, match=message) as err:
        cross.config(**params)
    assert "\n" not in str(err.value)


def test_spearman_bootstrap_on_known_cases():
    x = np.arange(12.0)
    assert cross.spearman_bootstrap(x, x ** 3, 200) == (1.0, 1.0, 1.0)
    assert cross.spearman_bootstrap(x, -x, 200) == (-1.0, -1.0, -1.0)
    assert all(np.isnan(cross.spearman_bootstrap(x, np.ones(12), 200)))
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=40), rng.normal(size=40)
    rho, lo, hi = cross.spearman_bootstrap(a, b, 1_000)
    assert rho == pytest.approx(spearmanr(a, b).statistic) and lo < rho < hi and lo < 0 < hi
    assert cross.spearman_bootstrap(a, b, 1_000) == (rho, lo, hi)   # seeded: the same interval every run


def test_no_bootstrap_interval_when_one_point_carries_the_correlation():
    """s = 1 at 11 of 12 points: most resamples have a constant s, so no interval is claimed."""
    s = np.ones(12)
    s[0] = 3.0
    rho, lo, hi = cross.spearman_bootstrap(np.arange(12.0), s, 1_000)
    assert np.isfinite(rho) and np.isnan(lo) and np.isnan(hi)
    assert cross.reading(lo, hi).startswith("no CI")


@pytest.mark.parametrize("lo, hi, sign, expected", [
    (0.1, 0.9, 1, REPRODUCED), (-0.9, -0.1, 1, NOT_REPRODUCED), (-0.2, 0.5, 1, INCONCLUSIVE),
    (-0.9, -0.1, -1, REPRODUCED), (0.0, 0.6, -1, NOT_REPRODUCED), (-0.5, 0.2, -1, INCONCLUSIVE),
    (float("nan"), float("nan"), 1, INCONCLUSIVE),
])
def test_relation_verdict(lo, hi, sign, expected):
    assert cross.relation_verdict(lo, hi, sign) == expected


def _table(seeds: int = 3, final_source: float = 0.95, sanity: float = 0.5) -> pd.DataFrame:
    """Rows per (seed, epoch) where FE, the P-T gap and s rise with the epoch and the barrier falls."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        for epoch in (1.0, 2.0, 4.0, 8.0):
            t = np.log2(epoch) + 0.1 * rng.normal()
            rows.append({"seed": seed, "checkpoint": f"ep{epoch:g}", "epoch": epoch,
                         "source_acc": final_source if epoch == 8 else 0.3, "fe_acc": 0.6 + 0.1 * t,
                         "ft_acc": 0.9 + 0.01 * t, "pt_gap": 0.02 * t, "barrier": 0.2 - 0.05 * t,
                         "lp_ood_gap": 0.01 * t, "lpft_ood_gain": rng.normal(), "s": t, "retention": rng.normal(),
                         "sanity_gap": sanity, "stir_residual": 0.05})
    return pd.DataFrame(rows)


def test_format_rho():
    assert cross.format_rho(0.8, 0.44, 0.95) == "+0.80 [+0.44, +0.95]"
    assert cross.format_rho(-0.4, float("nan"), float("nan")) == "-0.40 (no CI)"
    assert cross.format_rho(float("nan"), float("nan"), float("nan")) == "undefined"   # was '+nan (no CI)'


def test_verdicts_follow_the_preregistered_relations():
    table = _table()
    out = cross.verdicts(table, cross.correlation_table(table, 500))
    assert list(out["claim"]) == ["X1", "X2", "X3", "X4"]
    assert set(out["verdict"]) == {REPRODUCED}
    blind = _table(sanity=0.05)
    out = cross.verdicts(blind, cross.correlation_table(blind, 500)).set_index("claim")
    assert out.loc["X4", "verdict"] == INCONCLUSIVE and out.loc["X1", "verdict"] == REPRODUCED
    untrained = _table(final_source=0.2)
    assert set(cross.verdicts(untrained, cross.correlation_table(untrained, 500))["verdict"]) == {INCONCLUSIVE}


def test_within_checkpoint_view_needs_three_seeds():
    assert cross.correlation_table(_table(seeds=2), 100)["rho_within"].isna().all()
    within = cross.correlation_table(_table(seeds=3), 100).set_index(["x", "y"])
    assert within.loc[("epoch", "fe_acc"), "reading_within"].startswith("no CI")   # the epoch is removed
    assert np.isfinite(within.loc[("fe_acc", "s"), "rho_within"])


def test_ci_run_end_to_end_reuses_the_chapters_units(isolated_cache):
    cfg = cross.config("ci", device="cpu")
    first = cross.run(cfg, progress=False)
    table = first.table
    assert len(table) == cfg.seeds * (len(cfg.feature_reuse.checkpoint_epochs) + 1)
    assert table[list(cross.STATISTICS)].notna().all().all()
    assert table[["fe_acc", "ft_acc", "pt_acc", "rit_acc"]].stack().between(0, 1).all()
    assert list(first.verdicts["claim"]) == ["X1", "X2", "X3", "X4"]
    assert len(first.correlations) == len(cross.AXES) * (len(cross.AXES) - 1) // 2
    # Chapter 04's per-seed files: the final checkpoint keeps its name, earlier ones add theirs.
    names = {p.name for p in lpft_ood.unit_dir(cfg.lpft_ood).glob("*.json")}
    assert names == {f"seed{s}.json" for s in range(cfg.seeds)} | {f"seed{s}-ep1.json" for s in range(cfg.seeds)}
    assert "Data." in cross.discussion(first)

    # The final checkpoint's barrier is chapter 03's analysis; the path used for earlier ones agrees with it.
    data, final = cross.load_data(cfg), table[table["checkpoint"] == "ep2"].iloc[0]
    from transferlab.zoo import pretrain
    zoo_run = pretrain(cfg.fe_vs_ft.pretrain, int(final["seed"]), "cpu")
    pts, _ = feature_reuse.tuned_units(cfg.feature_reuse, zoo_run, data.reuse, "pt", 32, replicas=2, checkpoint="ep2")
    again = cross.path_barrier(cfg, zoo_run, data.reuse, "ep2", pts)
    assert again["barrier"] == pytest.approx(final["barrier"], abs=1e-6)

    files = {p: p.stat().st_mtime_ns for p in isolated_cache.rglob("*") if p.is_file()}
    second = cross.run(cfg, progress=False)   # everything from the cache: nothing written, nothing added
    assert {p: p.stat().st_mtime_ns for p in isolated_cache.rglob("*") if p.is_file()} == files
    pd.testing.assert_frame_equal(first.table, second.table)
