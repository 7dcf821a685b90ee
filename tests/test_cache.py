import json
import os

import numpy as np
import pytest

from transferlab.cache import atomic_write, cache_root, cached_arrays, cached_json, read_json


def test_cached_json_computes_once(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or {"x": 1}
    assert cached_json(tmp_path / "a.json", compute) == {"x": 1}
    assert cached_json(tmp_path / "a.json", compute) == {"x": 1}
    assert len(calls) == 1


# Each process appends to a log when it computes, and takes 1 s doing it: without the lock both compute.
SAME_UNIT = """
import sys, time
from pathlib import Path
from transferlab.cache import cached_arrays, cached_json
folder = Path(sys.argv[1])

def compute(kind):
    with open(folder / "computed.log", "a") as log:
        log.write(kind + "\\n")
    time.sleep(1.0)
    return {"value": 7}

print(cached_json(folder / "unit.json", lambda: compute("json"))["value"],
      int(cached_arrays(folder / "unit.npz", lambda: {"a": __import__("numpy").full(2, compute("arrays")["value"])})["a"][0]))
"""


def test_processes_needing_the_same_unit_at_once_compute_it_once(tmp_path):
    """Per-seed processes and sweep workers share units: one computes each, the others wait and read it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRANSFERLAB_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", SAME_UNIT, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outputs == [["7", "7"]] * 3
    assert sorted((tmp_path / "computed.log").read_text().split()) == ["arrays", "json"]


def test_failed_write_leaves_no_file(tmp_path):
    def broken(tmp):
        tmp.write_text('{"half": ')
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "r.json", broken)
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_umask_mode_not_mkstemps(tmp_path):
    # Workers of a shared cache (README: a cluster) must read what another user's worker wrote.
    atomic_write(tmp_path / "r.json", lambda tmp: tmp.write_text("{}"))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask   # mkstemp alone: 0o600


def test_an_empty_cache_variable_means_the_default_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cache_root() == tmp_path / ".cache" / "transferlab"


def test_truncated_files_are_recomputed(tmp_path):
    (tmp_path / "r.json").write_text('{"half": ')
    assert read_json(tmp_path / "r.json") is None
    assert cached_json(tmp_path / "r.json", lambda: {"ok": True}) == {"ok": True}
    assert json.loads((tmp_path / "r.json").read_text()) == {"ok": True}
    (tmp_path / "a.npz").write_bytes(b"PK\x03\x04 truncated")
    out = cached_arrays(tmp_path / "a.npz", lambda: {"a": np.arange(3)})
    assert out["a"].tolist() == [0, 1, 2]
    with np.load(tmp_path / "a.npz") as f:
        assert f["a"].tolist() == [0, 1, 2]


def test_results_only_zoo_copy_is_not_retrained(tmp_path, isolated_cache):
    """scripts/gpu_study.sh returns the zoo without weights: such a run counts as finished (its
    results render from the cache), loading a checkpoint from it is a one-line error, and a run
    missing only some weights is damaged and trained again."""
    import pytest

    from transferlab.config import ParameterError, PretrainConfig, apply_overrides, validate
    from transferlab.profiles import ZOO
    from transferlab.zoo import pretrain

    cfg = validate(apply_overrides(PretrainConfig(), {**ZOO["ci"], "train.epochs": 1, "source_size": 200}))
    run = pretrain(cfg, seed=0, device="cpu")
    weights = sorted(run.path.glob("*.safetensors"))
    assert len(weights) == len(run.checkpoints()) >= 2
    for path in [*weights, *run.path.glob("*.pt")]:
        path.unlink()
    again = pretrain(cfg, seed=0, device="cpu")
    assert again.checkpoints() == run.checkpoints() and not list(run.path.glob("*.safetensors"))
    with pytest.raises(ParameterError, match="copied without its weights") as err:
        again.load("ep0")
    assert "\n" not in str(err.value)

    (run.path / "done.json").unlink()          # retrain, then lose a single checkpoint: damaged
    pretrain(cfg, seed=0, device="cpu")
    weights[-1].unlink()
    pretrain(cfg, seed=0, device="cpu")
    assert sorted(run.path.glob("*.safetensors")) == weights


def test_compute_ledger_counts_each_unit_once(tmp_path):
    """The front page's study cost: a unit read twice (two chapters share it) is charged once, a
    file without 'seconds' is not a unit, and nothing is charged outside the block."""
    from transferlab.cache import compute_ledger

    cached_json(tmp_path / "before.json", lambda: {"seconds": 99.0})
    with compute_ledger() as ledger:
        cached_json(tmp_path / "a.json", lambda: {"x": 1, "seconds": 30.0})   # computed
        cached_json(tmp_path / "a.json", lambda: {"x": 2, "seconds": 5.0})    # read back: same unit
        cached_json(tmp_path / "before.json", lambda: {})                      # computed earlier, read here
        cached_json(tmp_path / "table.json", lambda: {"rows": []})             # no compute time recorded
    cached_json(tmp_path / "after.json", lambda: {"seconds": 7.0})
    assert ledger == {str(tmp_path / "a.json"): 30.0, str(tmp_path / "before.json"): 99.0}


def test_compute_ledger_charges_a_zoo_run_once(isolated_cache):
    """Every chapter asks the zoo for its pretraining runs; the study pays for each run once."""
    from transferlab.cache import compute_ledger
    from transferlab.config import PretrainConfig, apply_overrides, validate
    from transferlab.profiles import ZOO
    from transferlab.zoo import pretrain

    cfg = validate(apply_overrides(PretrainConfig(), {**ZOO["ci"], "train.epochs": 1, "source_size": 200}))
    with compute_ledger() as ledger:
        run = pretrain(cfg, seed=0, device="cpu")       # trained
        pretrain(cfg, seed=0, device="cpu")             # found finished
    assert ledger == {str(run.path): run.computed["wall_time_s"]} and run.computed["wall_time_s"] > 0
    assert ledger.origins[str(run.path)]["device"] == run.computed["device"]   # where it was trained


def test_nested_compute_ledgers_close_independently(tmp_path):
    """A chapter's ledger inside the front page's: equal contents, yet each closes on its own and the
    outer one keeps counting after the inner one has closed."""
    from transferlab.cache import compute_ledger

    with compute_ledger() as outer:
        with compute_ledger() as inner:
            cached_json(tmp_path / "a.json", lambda: {"seconds": 1.0})
        assert inner == outer
        cached_json(tmp_path / "b.json", lambda: {"seconds": 2.0})
    assert inner == {str(tmp_path / "a.json"): 1.0}
    assert outer == {str(tmp_path / "a.json"): 1.0, str(tmp_path / "b.json"): 2.0}


def test_a_unit_records_where_it_was_computed(tmp_path):
    """Inside a ledger opened with an origin, a unit computed now stores it (with the time); the
    caller gets the unit without it, and a later ledger reads it back from the file."""
    from transferlab.cache import compute_ledger, read_json

    origin = {"device": "NVIDIA H200", "commit": "abc", "versions": {"torch": "2.11.0"}}
    with compute_ledger(origin):
        unit = cached_json(tmp_path / "a.json", lambda: {"x": 1, "seconds": 3.0})
        cached_json(tmp_path / "table.json", lambda: {"rows": []})   # not a unit: nothing recorded
    assert unit == {"x": 1, "seconds": 3.0}
    assert read_json(tmp_path / "a.json")["origin"]["device"] == "NVIDIA H200"
    assert "origin" not in read_json(tmp_path / "table.json")
    with compute_ledger() as later:   # read on another machine: the record travels with the unit
        assert cached_json(tmp_path / "a.json", lambda: {}) == {"x": 1, "seconds": 3.0}
    assert later.origins[str(tmp_path / "a.json")]["commit"] == "abc"
