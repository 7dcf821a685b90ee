"""Interruption (issue 7): a pretraining run killed with SIGKILL resumes from its last checkpoint
and ends with the weights and results of an uninterrupted run, bit for bit; a truncated cache
file (safetensors, npz, json) is detected and recomputed, never taken for complete.

The runs are the `ci` zoo's (600 glyphs, 2 epochs of 10 steps, checkpoints ep0, ep0.5, ep1, ep2),
each in a subprocess with the same thread count, so that floating-point sums agree bit for bit.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from transferlab.cache import cached_arrays, cached_json, read_json

PRETRAIN = """
from transferlab.config import PretrainConfig, apply_overrides, validate
from transferlab.profiles import ZOO
from transferlab.zoo import pretrain
print(pretrain(validate(apply_overrides(PretrainConfig(), ZOO["ci"])), seed=0, device="cpu").path)
"""


def _start(cache: Path) -> subprocess.Popen:
    env = {**os.environ, "TRANSFERLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-c", PRETRAIN], env=env, stdout=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> Path:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0
    return Path(out.strip())


def _kill_after(proc: subprocess.Popen, run: Path, checkpoint: str) -> dict:
    """SIGKILL `proc` as soon as `checkpoint` is committed (last.json names it, or a later one);
    returns last.json as the kill left it."""
    while proc.poll() is None:
        last = read_json(run / "last.json")
        if last is not None and checkpoint in last["checkpoints"]:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return read_json(run / "last.json")
        time.sleep(0.002)
    pytest.fail(f"the run ended before checkpoint {checkpoint} was committed")


def _checkpoints(run: Path) -> dict[str, tuple[dict, dict]]:
    """checkpoint name -> (weights, metadata without the training time so far) of a finished run."""
    return {name: (load_file(run / f"{name}.safetensors"),
                   {k: v for k, v in read_json(run / f"{name}.json").items() if k != "train_seconds"})
            for name in read_json(run / "done.json")["checkpoints"]}


def _assert_same_run(run: Path, reference: Path) -> None:
    got, want = _checkpoints(run), _checkpoints(reference)
    assert list(got) == list(want)
    for name, (weights, meta) in want.items():
        assert got[name][1] == meta, f"metadata of {name} differs (losses or accuracy)"
        assert weights.keys() == got[name][0].keys()
        assert all(torch.equal(got[name][0][k], w) for k, w in weights.items()), f"weights of {name} differ"
    assert read_json(run / "done.json")["losses"] == read_json(reference / "done.json")["losses"]


@pytest.mark.slow  # four ci pretrainings in subprocesses per case (about 20 s on 2 free cores)
@pytest.mark.parametrize("checkpoint", ["ep0.5", "ep1"])   # killed inside epoch 1 or at its end
def test_sigkill_resumes_bit_exact_and_truncated_checkpoint_is_retrained(tmp_path, checkpoint):
    reference_proc = _start(tmp_path / "reference")  # uninterrupted, alongside the interrupted one
    proc = _start(tmp_path / "killed")
    run = tmp_path / "killed" / "zoo"
    while not run.exists() or not any(run.iterdir()):
        assert proc.poll() is None
        time.sleep(0.01)
    run = next(run.iterdir())
    last = _kill_after(proc, run, checkpoint)
    assert proc.returncode == -signal.SIGKILL and read_json(run / "done.json") is None
    kept = {name: (run / f"{name}.safetensors").stat().st_ino for name in ["ep0", *last["checkpoints"]]}
    print(f"killed at step {last['step']} (target {checkpoint}, last committed {last['name']}); kept {list(kept)}")

    assert _finish(_start(tmp_path / "killed")) == run
    reference = _finish(reference_proc)
    # Resumed, not restarted: the checkpoints from before the kill are the same files (atomic
    # writes replace a file by a new inode), and the rest equal the uninterrupted run's bit for bit.
    assert {name: (run / f"{name}.safetensors").stat().st_ino for name in kept} == kept, checkpoint
    _assert_same_run(run, reference)

    # A truncated checkpoint (and a truncated cached data set) is not trusted: the run is redone.
    for path in (run / "ep1.safetensors", *(tmp_path / "killed" / "data").glob("*.npz")):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert _finish(_start(tmp_path / "killed")) == run
    _assert_same_run(run, reference)


def test_truncated_json_is_recomputed(tmp_path):
    path, calls, value = tmp_path / "unit.json", [], {"acc": 0.5, "curve": list(range(50))}

    def compute() -> dict:
        calls.append(1)
        return value

    assert cached_json(path, compute) == value and len(calls) == 1
    path.write_text(path.read_text()[:-7])
    assert cached_json(path, compute) == value and len(calls) == 2
    assert cached_json(path, compute) == value and len(calls) == 2


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9, 0.999])
def test_truncated_npz_is_recomputed(tmp_path, keep):
    path, calls = tmp_path / "features.npz", []
    arrays = {"train": np.arange(4000, dtype=np.float32).reshape(40, 100), "labels": np.arange(40)}

    def compute() -> dict:
        calls.append(1)
        return arrays

    cached_arrays(path, compute)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    got = cached_arrays(path, compute)
    assert len(calls) == 2 and all(np.array_equal(got[k], v) for k, v in arrays.items())
    got = cached_arrays(path, compute)
    assert len(calls) == 2 and all(np.array_equal(got[k], v) for k, v in arrays.items())


@pytest.mark.slow  # two ci runs of chapter 04 through the CLI (about 30 s on 2 free cores)
def test_ctrl_c_exits_130_in_one_line_and_the_rerun_resumes(tmp_path):
    """SIGINT (Ctrl-C) during pretraining: exit status 130, one line on stderr, no temporary file
    left in the cache; the same command again resumes from the committed checkpoint and finishes."""
    env = {**os.environ, "TRANSFERLAB_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "transferlab", "run", "lpft_ood", "--profile", "ci", "-p", "seeds=1"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and not any((tmp_path / "zoo").glob("*/last.json")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted: rerun the same command to resume"
    assert not list(tmp_path.rglob("*.tmp")), "a half-written file was left behind"
    run = next((tmp_path / "zoo").iterdir())
    committed = read_json(run / "last.json")["checkpoints"]
    inodes = {name: (run / f"{name}.safetensors").stat().st_ino for name in ["ep0", *committed]}

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "D1" in rerun.stdout
    assert {name: (run / f"{name}.safetensors").stat().st_ino for name in inodes} == inodes, "restarted, not resumed"
