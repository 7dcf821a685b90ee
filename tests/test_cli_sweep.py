"""`python -m transferlab --help` and `sweep`: the grid's task list, one aggregated verdict table."""
from __future__ import annotations

import subprocess
import sys
import types

import pandas as pd
import pytest

from transferlab import cli


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "transferlab", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "{run,sweep,zoo,info,summary}" in proc.stdout


def test_grid_tasks_is_the_product_in_order():
    tasks = cli.grid_tasks({"seeds": 2}, {"ft_epochs": [1, 2], "ft_lrs": [(0.1,), (0.1, 0.3)]})
    assert tasks == [{"seeds": 2, "ft_epochs": 1, "ft_lrs": (0.1,)}, {"seeds": 2, "ft_epochs": 1, "ft_lrs": (0.1, 0.3)},
                     {"seeds": 2, "ft_epochs": 2, "ft_lrs": (0.1,)}, {"seeds": 2, "ft_epochs": 2, "ft_lrs": (0.1, 0.3)}]


@pytest.mark.parametrize("text, parsed", [
    ("ft_epochs=1,2", ("ft_epochs", [1, 2])),
    ("ft_lrs=(0.1,0.3),(0.03,)", ("ft_lrs", [(0.1, 0.3), (0.03,)])),
    ("arch=resnet,vit", ("arch", ["resnet", "vit"])),
    ("spectral_energy=0.8", ("spectral_energy", [0.8])),
])
def test_parse_grid(text, parsed):
    assert cli._parse_grid(text) == parsed


@pytest.fixture
def toy_finding(monkeypatch):
    """A finding whose verdict depends on its parameters: the runner and table, without training."""
    calls = []

    def config(profile, **params):
        if params.get("seeds", 1) < 1:
            raise cli.ParameterError(f"The 'seeds' parameter must be an int in the range [1, 100]. "
                                     f"Got {params['seeds']!r} instead.")
        return {"profile": profile, **params}

    def run(cfg):
        calls.append(cfg)
        verdicts = pd.DataFrame({"claim": ["T1", "T2"], "value": [cfg["a"] * 10 + cfg["seeds"], 0.0],
                                 "verdict": ["reproduced", "inconclusive"]})
        return types.SimpleNamespace(verdicts=verdicts)

    monkeypatch.setitem(sys.modules, "toy_finding", types.SimpleNamespace(config=config, run=run))
    monkeypatch.setitem(cli.FINDINGS, "toy", "toy_finding")
    return calls


def test_sweep_prints_one_row_per_point_and_verdict(toy_finding, capsys):
    assert cli.main(["sweep", "toy", "--profile", "ci", "-p", "seeds=2", "--grid", "a=1,2,3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["a", "claim", "value", "verdict"] and len(lines) == 1 + 3 * 2
    assert [line.split()[:3] for line in lines[1::2]] == [["1", "T1", "12.0"], ["2", "T1", "22.0"], ["3", "T1", "32.0"]]
    assert [cfg["a"] for cfg in toy_finding] == [1, 2, 3]


def test_sweep_checks_every_point_before_computing(toy_finding, capsys):
    assert cli.main(["sweep", "toy", "--profile", "ci", "--grid", "a=1,2", "--grid", "seeds=1,0"]) == 2
    assert "The 'seeds' parameter" in capsys.readouterr().err
    assert toy_finding == []
