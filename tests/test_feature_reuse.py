"""Finding 03: config validation before any compute, and the verdicts computed from tables."""
import numpy as np
import pandas as pd
import pytest

from transferlab.config import ParameterError
from transferlab.findings import feature_reuse as fr
from transferlab.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED


def test_profiles_validate_and_share_the_zoo():
    from transferlab.findings import fe_vs_ft

    for profile in ("ci", "cpu", "gpu"):
        cfg = fr.config(profile, device="cpu")
        assert cfg.blocks[0] == 32 and list(cfg.blocks) == sorted(cfg.blocks, reverse=True)
        assert cfg.pretrain == fe_vs_ft.config(profile, device="cpu").pretrain  # same zoo checkpoints as 02
    cpu = fr.config("cpu", device="cpu")
    assert cpu.blocks == (32, 16, 8, 4, 2, 1) and cpu.seeds >= 3 and cpu.interp_points >= 25


@pytest.mark.parametrize("params, name", [
    ({"blocks": (32, 5)}, "'blocks'"),
    ({"blocks": (16, 8)}, "'blocks'"),
    ({"blocks": (32, 0)}, "'blocks'"),
    ({"analysis_blocks": (3,)}, "'analysis_blocks'"),
    ({"blocks": (32, 8), "analysis_blocks": (4,)}, "'analysis_blocks'"),
    ({"checkpoint_epochs": (8.0,)}, "'checkpoint_epochs'"),
    ({"checkpoint_epochs": (0.3,)}, "'checkpoint_epochs'"),
    ({"speed_epoch": 1.5}, "'speed_epoch'"),
    ({"interp_points": 1}, "'interp_points'"),
    ({"seeds": 0}, "'seeds'"),
    ({"nonsense": 1}, "nonsense"),
])
def test_bad_parameters_are_one_line_errors(params, name):
    with pytest.raises(ParameterError) as err:
        fr.config("cpu", device="cpu", **params)
    assert name in str(err.value) and "\n" not in str(err.value)


def _gaps(rel_gap_by_block, seeds=3, noise=0.0):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        for b, rel in rel_gap_by_block.items():
            acc_pt = 0.9
            acc_rit = acc_pt * (1 - rel - noise * rng.standard_normal())
            rows.append({"seed": seed, "block": b, "acc_pt": acc_pt, "acc_rit": acc_rit,
                         "early_pt": 0.5, "early_rit": 0.3})
    g = pd.DataFrame(rows)
    g["gap"] = g["acc_pt"] - g["acc_rit"]
    g["rel_gap"] = g["gap"] / g["acc_pt"]
    g["early_gap"] = g["early_pt"] - g["early_rit"]
    return g


def test_c1_c2_from_gap_tables():
    shrinking = _gaps({32: 0.2, 16: 0.15, 8: 0.1, 4: 0.06, 2: 0.04, 1: 0.02}, noise=0.001)
    c1 = fr.verdict_c1(shrinking)[0]
    assert c1["claim"] == "C1" and c1["verdict"] == REPRODUCED
    c2 = fr.verdict_c2(shrinking, speed_step=15)
    assert [r["verdict"] for r in c2] == [REPRODUCED, REPRODUCED] and "b = 1" in c2[0]["statistic"]
    growing = _gaps({32: 0.01, 16: 0.03, 8: 0.05, 4: 0.07, 2: 0.09, 1: 0.11}, noise=0.001)
    assert fr.verdict_c1(growing)[0]["verdict"] == NOT_REPRODUCED


def _barriers(pt, ri):
    return pd.DataFrame([{"block": 32, "seed": s, "pair": pair, "barrier": v}
                         for s in range(3) for pair, v in (("P-T/P-T", pt[s]), ("RI-T/RI-T", ri[s]))]
                        + [{"block": 1, "seed": s, "pair": "P-T/P-T", "barrier": 0.5} for s in range(3)])


def test_c3_uses_the_unshuffled_block_and_its_thresholds():
    rows = fr.verdict_c3(_barriers([0.001, 0.002, 0.0], [0.2, 0.25, 0.22]))
    assert [r["verdict"] for r in rows] == [REPRODUCED, REPRODUCED]
    rows = fr.verdict_c3(_barriers([0.10, 0.12, 0.11], [0.01, 0.0, 0.02]))
    assert [r["verdict"] for r in rows] == [NOT_REPRODUCED, NOT_REPRODUCED]
    rows = fr.verdict_c3(_barriers([0.0, 0.05, 0.01], [0.2, 0.0, 0.1]))
    assert [r["verdict"] for r in rows] == [INCONCLUSIVE, INCONCLUSIVE]


def _criticality(lower, upper, head=0.8):
    rows = []
    modules = ["stem", "blocks.0", "blocks.1", "blocks.2", "head"]
    crit = [lower, lower, upper, upper, head]
    for seed in range(3):
        for depth, (module, c) in enumerate(zip(modules, crit)):
            for alpha in (0.0, 0.5, 1.0):
                err = 0.1 + (c * alpha + 0.001 * seed if alpha > 0 else 0.0)
                rows.append({"block": 32, "seed": seed, "init": "P-T", "module": module, "depth": depth,
                             "alpha": alpha, "error": err, "trained_error": 0.1})
    return pd.DataFrame(rows)


def test_c4_statistic_excludes_the_head():
    diff = fr.criticality_difference(_criticality(0.0, 0.2), "P-T")
    assert np.allclose(diff.loc[32].to_numpy(), 0.2 * 0.75)  # mean over alphas 0.5 and 1.0
    assert fr.verdict_c4(_criticality(0.0, 0.2))[0]["verdict"] == REPRODUCED
    # a critical head alone must not make lower layers look less critical
    assert fr.verdict_c4(_criticality(0.2, 0.0, head=5.0))[0]["verdict"] == NOT_REPRODUCED


def test_flattening_epoch():
    table = pd.DataFrame({"pretrain_epoch": [0.5, 1, 2, 4, 8], "test_acc": [0.80, 0.90, 0.945, 0.95, 0.952]})
    assert fr.flattening_epoch(table) == 2.0


def test_an_untrained_random_init_baseline_makes_c1_to_c3_inconclusive():
    from types import SimpleNamespace

    gaps = _gaps({32: 0.2, 16: 0.15, 8: 0.1, 4: 0.06, 2: 0.04, 1: 0.02}, noise=0.001)
    results = SimpleNamespace(gaps=gaps, runs=pd.DataFrame({"early_step": [15.0]}),
                              barriers=_barriers([0.001, 0.002, 0.0], [0.2, 0.25, 0.22]),
                              criticality=_criticality(0.0, 0.2), source=pd.DataFrame({"source_acc": [0.9] * 3}))
    trained = fr.verdicts(results, None).set_index("statistic")
    assert set(trained["verdict"]) == {REPRODUCED} and "note" not in trained
    # One RI-T seed at chance (10%) on unshuffled images: every comparison with RI-T rests on it.
    gaps.loc[(gaps["seed"] == 0) & (gaps["block"] == 32), "acc_rit"] = 0.1
    failed = fr.verdicts(results, None)
    against_rit = failed["claim"].isin(["C1", "C2", "C3"])
    assert set(failed.loc[against_rit, "verdict"]) == {INCONCLUSIVE}
    assert failed.loc[against_rit, "note"].str.contains("the random-init baseline did not train").all()
    assert list(failed.loc[~against_rit, "verdict"]) == [REPRODUCED] and list(failed.loc[~against_rit, "note"]) == [""]


def test_each_run_takes_the_lr_best_on_validation_and_its_replica_the_same(monkeypatch):
    from types import SimpleNamespace

    val_by_lr = {0.03: 0.80, 0.1: 0.90, 0.3: 0.90}    # a tie between 0.1 and 0.3: the earlier in the grid wins
    calls = []

    def fake_unit(cfg, zoo_run, data, init, block, replica, checkpoint, lr):
        calls.append((init, block, replica, checkpoint, lr))
        return {"init": init, "block": block, "replica": replica, "checkpoint": checkpoint or "ep4", "lr": lr,
                "val_acc": val_by_lr[lr] - 0.01 * replica, "test_acc": 0.5}

    monkeypatch.setattr(fr, "finetune_unit", fake_unit)
    cfg = fr.config("ci", device="cpu", pt_lrs=(0.03, 0.1, 0.3), rit_lrs=(0.3,))
    zoo_run = SimpleNamespace(seed=0)
    chosen, searched = fr.tuned_units(cfg, zoo_run, None, "pt", 8, replicas=2)
    assert [u["lr"] for u in searched] == [0.03, 0.1, 0.3] and [u["replica"] for u in searched] == [0, 0, 0]
    assert [(u["replica"], u["lr"]) for u in chosen] == [(0, 0.1), (1, 0.1)]
    assert calls[-1] == ("pt", 8, 1, "ep4", 0.1)          # the replica from the same checkpoint
    (rit,), searched = fr.tuned_units(cfg, zoo_run, None, "ri", 32)
    assert rit["lr"] == 0.3 and len(searched) == 1       # RI-T's own grid
    (early,), _ = fr.tuned_units(cfg, zoo_run, None, "pt", 32, checkpoint="ep1")
    assert early["checkpoint"] == "ep1" and calls[-1][3] == "ep1"


def test_lr_grids_are_parameters_with_one_line_errors():
    assert fr.config("gpu", device="cpu").rit_lrs == (0.01, 0.03, 0.1)
    with pytest.raises(ParameterError, match="'rit_lrs'"):
        fr.config("ci", device="cpu", rit_lrs=())
    with pytest.raises(ParameterError, match="Did you mean 'pt_lrs'"):
        fr.config("ci", device="cpu", pt_lr=0.1)


def test_c1_interval_stays_within_a_correlation_range():
    # Per-seed Spearman rhos 1, 1, -1: the t-interval (mean 0.333, half-width 2.868) would run past +-1.
    rows = [{"seed": s, "block": b, "rel_gap": (b if s < 2 else -b) / 100} for s in range(3) for b in (32, 8, 1)]
    c1 = fr.verdict_c1(pd.DataFrame(rows))[0]
    assert c1["value (95% CI over seeds)"] == "0.333 [-1.000, 1.000]" and c1["verdict"] == INCONCLUSIVE
