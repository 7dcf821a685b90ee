"""End to end: finding 02 on the ci profile, its verdict logic on hand-made tables, and its cache."""
import numpy as np
import pandas as pd

from transferlab.findings import fe_vs_ft
from transferlab.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_ci_run_end_to_end_and_cached(isolated_cache):
    cfg = fe_vs_ft.config("ci", device="cpu")
    first = fe_vs_ft.run(cfg)
    table = first.checkpoints
    assert sorted(table["seed"].unique()) == list(range(cfg.seeds))
    assert set(table["checkpoint"]) == {"ep0", "ep0.5", "ep1", "ep2"}
    for col in ("source_acc", "fe_acc", "ft_acc", "fe_main_acc", "fe_residual_acc"):
        assert table[col].between(0, 1).all(), col
    assert list(first.verdicts["claim"]) == ["B1", "B2", "B2", "B3"]
    assert set(first.verdicts["verdict"]) <= {REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE}
    assert first.provenance["wall_time_s"] > 0 and first.provenance["versions"]["torch"]

    files = {p: p.stat().st_mtime_ns for p in isolated_cache.rglob("*") if p.is_file()}
    second = fe_vs_ft.run(cfg)  # everything comes from the cache: no training
    assert {p: p.stat().st_mtime_ns for p in isolated_cache.rglob("*") if p.is_file()} == files
    pd.testing.assert_frame_equal(first.checkpoints, second.checkpoints)
    assert len(list((isolated_cache / "zoo").glob("*-seed*"))) == cfg.seeds


def _table(fe_val: list[list[float]], fe: list[list[float]]) -> pd.DataFrame:
    """Rows per (seed, epoch) from per-seed curves over epochs 1..E."""
    rows = []
    for seed, (val_curve, test_curve) in enumerate(zip(fe_val, fe)):
        for e, (v, t) in enumerate(zip(val_curve, test_curve), start=1):
            rows.append({"seed": seed, "epoch": float(e), "fe_val_acc": v, "fe_acc": t,
                         "source_acc": 0.5 + 0.05 * e, "ft_acc": 0.8 + 0.01 * e,
                         "main_stability": 0.9, "residual_stability": 0.5})
    return pd.DataFrame(rows)


def test_b1_on_hand_made_curves():
    peaked = [[0.80, 0.90, 0.85]] * 3
    gap = _table(peaked, [[0.80, 0.90, 0.85], [0.81, 0.91, 0.85], [0.80, 0.92, 0.86]])
    assert fe_vs_ft.verdict_b1(gap)[0]["verdict"] == REPRODUCED
    rising = [[0.80, 0.85, 0.90]] * 3
    assert fe_vs_ft.verdict_b1(_table(rising, rising))[0]["verdict"] == NOT_REPRODUCED
    noisy = _table(peaked, [[0.80, 0.90, 0.85], [0.81, 0.84, 0.86], [0.80, 0.88, 0.85]])
    assert fe_vs_ft.verdict_b1(noisy)[0]["verdict"] == INCONCLUSIVE
    # Gaps 0.04, 0.02, 0.06: the mean reaches max(1 pp, 2 SD) = 0.04, but the CI [-0.010, 0.090]
    # holds 0, so the gap is not shown; only a CI wholly past the threshold reproduces it.
    borderline = _table(peaked, [[0.80, 0.90, 0.86], [0.80, 0.90, 0.88], [0.80, 0.90, 0.84]])
    row = fe_vs_ft.verdict_b1(borderline)[0]
    assert row["value (95% CI over seeds)"] == "0.040 [-0.010, 0.090]" and row["verdict"] == INCONCLUSIVE
    # Gaps -0.10, -0.05, 0.00: the CI [-0.174, 0.074] lies wholly below max(1 pp, 2 SD) = 0.100.
    worse = _table(peaked, [[0.80, 0.80, 0.90], [0.80, 0.85, 0.90], [0.80, 0.90, 0.90]])
    row = fe_vs_ft.verdict_b1(worse)[0]
    assert row["value (95% CI over seeds)"] == "-0.050 [-0.174, 0.074]" and row["verdict"] == NOT_REPRODUCED


def test_b2_and_b3_on_hand_made_curves():
    flat = [[0.9, 0.9, 0.9, 0.9]] * 3
    table = _table(flat, [[0.9, 0.92, 0.91, 0.90], [0.91, 0.9, 0.92, 0.9], [0.9, 0.91, 0.9, 0.92]])
    rho_ft, diff = fe_vs_ft.verdict_b2(table)
    assert rho_ft["verdict"] == REPRODUCED  # FT rises with source accuracy in every seed
    # FE's Spearman per seed: -0.105, -0.211, 0.632, so FT's minus FE's is 0.895 on average; three seeds
    # this far apart leave the difference's CI (cut at its range's top, 2) across 0.
    assert diff["value (95% CI over seeds)"] == "0.895 [-0.247, 2.000]" and diff["verdict"] == INCONCLUSIVE
    assert fe_vs_ft.verdict_b3(table)[0]["verdict"] == REPRODUCED  # main 0.9 > residual 0.5 everywhere
    table["main_stability"] = 0.1
    assert fe_vs_ft.verdict_b3(table)[0]["verdict"] == NOT_REPRODUCED
    # Seed 0's FT accuracy is flat, so its Spearman is undefined: the other two seeds' rho = 1 alone
    # would read as reproduced with a zero-width CI.
    table.loc[table["seed"] == 0, "ft_acc"] = 0.85
    rho_ft, _ = fe_vs_ft.verdict_b2(table)
    assert rho_ft["verdict"] == INCONCLUSIVE and "(1 of 3 seeds undefined)" in rho_ft["value (95% CI over seeds)"]


def test_failed_pretraining_makes_every_verdict_inconclusive():
    curves = [[0.80, 0.90, 0.85]] * 3
    table = _table(curves, curves)
    table["source_acc"] = np.where(table["epoch"] == 3, 0.1, table["source_acc"])
    out = fe_vs_ft.verdicts(table, None)
    assert set(out["verdict"]) == {INCONCLUSIVE}
