import pandas as pd
import pytest

from transferlab.cli import main


def test_bad_parameter_is_one_line_error(capsys):
    assert main(["run", "fe_vs_ft", "--profile", "ci", "-p", "pretrain_epochs=-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The 'pretrain.train.epochs' parameter") and "\n" not in err


@pytest.mark.parametrize("argv, fragment", [
    (["run", "nope"], "'finding' parameter must be one of"),
    (["run", "fe_vs_ft", "--profile", "huge"], "'profile' parameter must be one of"),
    (["run", "fe_vs_ft", "-p", "seeds"], "key=value"),
    (["run", "lpft_ood", "--profile", "ci", "--seed", "2"], "'seed' parameter must be an integer from 0 to 1"),
])
def test_bad_invocations(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_info_and_empty_zoo(capsys):
    assert main(["info"]) == 0
    assert '"torch"' in capsys.readouterr().out
    assert main(["zoo", "list"]) == 0
    assert "empty" in capsys.readouterr().out


def test_run_of_one_seed_computes_that_seed_and_a_later_run_reads_it(isolated_cache, capsys, monkeypatch):
    """`run --seed 1` (what scripts/gpu_study.sh runs side by side) computes seed 1's units only;
    the run of all seeds then computes seed 0 and reads seed 1, and gets the same numbers as a run
    that computes both seeds in order (nothing carries over from one seed to the next)."""
    from transferlab.cache import compute_ledger
    from transferlab.findings import lpft_ood

    params = ["-p", "seeds=2", "-p", "shifts=('gaussian-noise',)"]
    assert main(["run", "lpft_ood", "--profile", "ci", "--seed", "1", *params]) == 0
    assert "seed 1 computed into the cache" in capsys.readouterr().out
    units = sorted(p.name for p in (isolated_cache / "findings" / "lpft_ood").rglob("seed*.json"))
    zoo = sorted(p.name.rsplit("-", 1)[1] for p in (isolated_cache / "zoo").iterdir())
    assert units == ["seed1.json"] and zoo == ["seed1"]
    cfg = lpft_ood.config("ci", seeds=2, shifts=("gaussian-noise",))
    with compute_ledger() as ledger:
        results = lpft_ood.run(cfg, progress=False)
    assert sorted(results.units["seed"]) == [0, 1] and len(ledger) == 4   # two zoo runs, two seed units
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(isolated_cache.parent / "in-order"))
    in_order = lpft_ood.run(cfg, progress=False)
    pd.testing.assert_frame_equal(results.accuracy, in_order.accuracy)
    pd.testing.assert_frame_equal(results.units.drop(columns="seconds"), in_order.units.drop(columns="seconds"))
